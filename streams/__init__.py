"""Kafka I/O, Avro serde, dataflow wiring and the ``retailpulse`` command line."""

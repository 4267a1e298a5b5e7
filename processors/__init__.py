"""Pure, typed transformation steps of the dataflows (no Kafka or Redis imports)."""

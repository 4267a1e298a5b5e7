"""Online River model wrappers (no I/O): demand, churn and supply models live here."""

"""The contract: conventions, the integer-model file and its method table, random models (no engine, no C++)."""

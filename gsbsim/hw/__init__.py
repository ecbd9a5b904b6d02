"""Hardware costs from the model header alone: BOPs/OPs, memory, folding cycles, resource estimates, plots."""

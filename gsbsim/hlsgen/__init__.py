"""HLS project generation and C-simulation: parameters, blocks, templates, the g++ toolchain."""

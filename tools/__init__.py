"""Scripts that set the project up: system programs, the pinned deploy/ tools."""

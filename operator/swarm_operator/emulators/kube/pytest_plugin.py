"""pytest fixtures for this emulator (filled in with the emulator)."""

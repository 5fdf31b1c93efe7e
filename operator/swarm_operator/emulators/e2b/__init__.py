"""E2B-compatible emulator."""

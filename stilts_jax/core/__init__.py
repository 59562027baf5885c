"""The foundation: errors, atomic file writing, local and gs:// paths, the device mesh, tokenizers."""

"""Demo catalog: a few movies with short, real, playable media files."""

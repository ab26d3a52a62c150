"""Inverse rendering (docs/protocol.md, "Inverse rendering"): LLFF scenes, rays, volume rendering."""

"""Inverse rendering (PROTOCOL.md, "Inverse rendering"): LLFF scenes, rays, volume rendering."""

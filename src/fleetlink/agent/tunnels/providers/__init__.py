"""Tunnel providers behind one interface (start / stop / health / public_url)."""

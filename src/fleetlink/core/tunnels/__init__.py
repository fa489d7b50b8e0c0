"""Tunnels: operators expose services of agents through providers; agents run and report them."""

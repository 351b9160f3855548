"""Pages of the Dash demonstrator: plain layout and figure functions, wired up in app/server.py."""

"""The one verb (`compress`), method configs, their registry and the context they run in."""

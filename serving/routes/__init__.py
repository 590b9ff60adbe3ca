"""The API's routes, one module per area; ``main.py`` includes their routers."""

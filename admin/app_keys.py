from aiohttp import web

from kraft.node_api import NodeApi

API_KEY = web.AppKey("api", NodeApi)

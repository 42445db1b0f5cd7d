"""kraft embedded in a Python program: a node on the caller's event loop (`node`)."""

from kraft.embedded.node import EmbeddedNode as EmbeddedNode
from kraft.embedded.node import TopicCreationError as TopicCreationError
from kraft.embedded.node import node as node

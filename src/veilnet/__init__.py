"""veilnet: image classification that keeps images private from the server that runs the model.

See docs/architecture.md for the layout. Subpackages: ``data``, ``models``, ``training``, ``keys``,
``keyed``, ``complex``, ``robust``, ``attacks``, ``serve``; modules ``metrics``, ``report``, ``cli``.
"""

__version__ = "0.1.0"

"""veilnet: image classification that keeps images private from the server that runs the model.

See DESIGN.md for the layout. Subpackages: ``data``, ``models``, ``keys``, ``keyed``,
``robust``, ``attacks``, ``serve``, ``training``, ``metrics``, ``report``, ``cli``.
"""

__version__ = "0.1.0"

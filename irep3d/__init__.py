"""irep3d: the hidden layers of a GAN as 3D motion graphics.

The flow of data is the architecture: model file -> generator -> layer capture -> walk ->
colour -> EXR clip -> scene -> render. Each step is a module usable from Python without
the CLI.
"""

__version__ = "0.1.0"

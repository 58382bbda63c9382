"""tfxai: explainable, edge-deployable chest X-ray pneumonia triage with TensorFlow/Keras 2.

Import the submodules you need (``tfxai.data``, ``tfxai.models``, ``tfxai.train`` ...); importing
``tfxai`` itself loads nothing heavy.
"""
__version__ = "0.1.0"

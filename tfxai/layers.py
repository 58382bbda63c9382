"""tfxai's own Keras layers, registered so that ``safe_mode`` loading can rebuild them.

None yet: every model is built from stock layers. The module exists so that ``tfxai.io.load_model``
has one place to import when a custom layer is added.
"""

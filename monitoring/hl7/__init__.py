"""The HL7 v2 lab feed (PRODUCT.md §9): ``python -m monitoring listen``.

``message`` reads a message (python-hl7 parses), ``codes`` maps OBX-3 to the catalogue, ``feed``
stores one message through the intake path in one transaction, ``ack`` builds the answer,
``server`` is the MLLP listener and ``folder`` the drop-folder mode.
"""

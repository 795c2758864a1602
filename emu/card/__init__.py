"""Card-side protocol engines and the minimal virtual card.

Portable: follows the restricted subset of docs/subset.md, like core/.
"""

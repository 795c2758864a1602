import os

from hypothesis import settings

# CI machines are loaded (QEMU takes a whole core): no per-example deadline.
settings.register_profile("ccidkit", deadline=None, max_examples=200)
settings.register_profile("ci", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "ccidkit"))

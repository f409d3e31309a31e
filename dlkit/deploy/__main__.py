"""``python -m dlkit.deploy --model dlkit.models:SmallCNN --weights w.pt ...`` serves a model over HTTP.

See :func:`dlkit.deploy.serve.main`. Used in chapter 09 and ``benchmarks/serving_load.py``.
"""

from dlkit.deploy.serve import main

main()

"""``python -m wasp_kubectl``: the same as ``kubectl wasp``."""

from wasp_kubectl import main

main()

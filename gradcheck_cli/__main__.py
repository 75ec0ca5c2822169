"""``python -m gradcheck_cli`` runs the same app as the ``gradcheck`` console script."""

from gradcheck_cli.cli.app import main

main()

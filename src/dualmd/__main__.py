from dualmd.cli import main

main()

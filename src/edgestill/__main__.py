from edgestill.cli import main

main()

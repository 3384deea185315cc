from stackmedic.cli import main

main()

from pvha.cli.app import main

main()

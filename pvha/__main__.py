from pvha.cli.main import main

main()

from fetcher.cli.main import main

main()

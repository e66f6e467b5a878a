from fetcher.cli.commands import main

main()

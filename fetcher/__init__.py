"""fetcher: dated, faithful content previews of the web sources a knowledge base cites."""

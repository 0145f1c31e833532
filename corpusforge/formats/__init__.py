"""Reading and writing the formats the sources come in (WARC, Pushshift dumps, MediaWiki dumps and their bzip2
blocks, wikitext, site folders of web pages), so that each source module reads as what it does with the records."""

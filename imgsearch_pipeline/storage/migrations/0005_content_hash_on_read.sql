-- The inventory lists and no longer reads: a new or changed object waits with content_hash NULL ("not read
-- yet") until the analysis step, which reads the bytes anyway, hashes them. An object that could not be read
-- (deleted after the listing, S3 errors) fails before any hash is known, so its failure record has none either.
ALTER TABLE product_images ALTER COLUMN content_hash DROP NOT NULL;
ALTER TABLE analysis_failures ALTER COLUMN content_hash DROP NOT NULL;

-- Reserved for issue-search's migration (a placeholder on the issue-log branch only, so
-- that versions stay contiguous; the lead drops this file when merging the real 0008).
SELECT 1;

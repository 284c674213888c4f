-- Placeholder for the migration numbered 0008 on another branch (issue-search); it only
-- keeps this branch's numbering contiguous (0009 follows). Delete this file when merging a
-- branch that brings its own 0008.
SELECT 1;

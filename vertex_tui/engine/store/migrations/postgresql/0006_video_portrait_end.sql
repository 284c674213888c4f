-- A portrait's subscription end changed: the next video pass looks at its videos.

CREATE FUNCTION mark_portrait_videos_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO video_dirty (portrait_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER tr_portraits_end_videos AFTER UPDATE OF subscription_end ON portraits
    FOR EACH ROW WHEN (OLD.subscription_end IS DISTINCT FROM NEW.subscription_end)
    EXECUTE FUNCTION mark_portrait_videos_dirty();

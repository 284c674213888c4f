-- A portrait's subscription end changed (renewed, cancelled, backdated): the next video pass
-- looks at its videos, to activate them again or to deactivate them at once.

CREATE TRIGGER tr_portraits_end_videos AFTER UPDATE OF subscription_end ON portraits
WHEN OLD.subscription_end IS NOT NEW.subscription_end BEGIN
    INSERT OR IGNORE INTO video_dirty VALUES (NEW.id);
END;

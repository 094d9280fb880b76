//! The projector: folds the event log into the SQL read models.

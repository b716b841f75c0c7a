package pgbackend

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/election"
)

// DeploymentID returns the cluster's deployment id, creating its row on
// the first call in the backend's whole life (see election.Operator). It
// works on a read-only backend whose role may insert into
// regent_deployments; one that may not gets the error while the row is
// missing, and the id once it exists (it reads before it inserts).
func (b *Backend) DeploymentID(ctx context.Context) (string, error) {
	var id string
	err := b.act.call(ctx, func(a *actor) error {
		var err error
		id, err = a.deploymentID()
		return err
	})
	return id, err
}

// deploymentID inserts the cluster's row if there is none and reads it.
// Of concurrent first callers one inserts; the others' INSERT waits for
// it and does nothing, and their read (a new statement, so a new
// snapshot) sees its row.
func (a *actor) deploymentID() (string, error) {
	ctx, cancel := a.stmt()
	defer cancel()
	cluster := a.b.s.Cluster
	// Read first: once the row exists, a role that may only read (a
	// monitor's status) gets it.
	var id string
	err := a.conn().QueryRow(ctx, `SELECT id FROM regent_deployments WHERE cluster = $1`, cluster).Scan(&id)
	switch {
	case err == nil:
		return a.checkDeploymentID(id)
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("pgbackend: read deployment id: %w", a.check(err))
	}
	tag, err := a.conn().Exec(ctx, `
INSERT INTO regent_deployments (cluster, id) VALUES ($1, $2)
ON CONFLICT (cluster) DO NOTHING`, cluster, election.NewDeploymentID())
	if err != nil {
		return "", fmt.Errorf("pgbackend: create deployment id: %w", a.check(err))
	}
	if err := a.conn().QueryRow(ctx, `SELECT id FROM regent_deployments WHERE cluster = $1`, cluster).Scan(&id); err != nil {
		return "", fmt.Errorf("pgbackend: read deployment id: %w", a.check(err))
	}
	if tag.RowsAffected() == 1 {
		a.b.log.Info("deployment id created", "deployment_id", id)
	}
	return a.checkDeploymentID(id)
}

// checkDeploymentID returns id, read from regent_deployments, if it is a
// deployment id.
func (a *actor) checkDeploymentID(id string) (string, error) {
	if !election.ValidDeploymentID(id) {
		return "", fmt.Errorf("%w: regent_deployments holds %q for cluster %s, not a deployment id (16 hex digits); restore it from a backup, or delete the row to make this a new deployment", election.ErrCorruptRecord, clip(id), a.b.s.Cluster)
	}
	return id, nil
}

// clip shortens a corrupt value for an error message.
func clip(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

package main

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/regentd/regent/config"
	"github.com/regentd/regent/worker"
)

// chooseContainment settles how the kernel holds each worker's tree to its
// guard and says so in one log line: the configured one (refused with a
// clear error if the kernel does not allow it), or with "auto" the best
// the kernel allows, with one warning naming what is missing when that is
// none.
func chooseContainment(ctx context.Context, cfg *config.Config, guard worker.Spec, log hclog.Logger) (worker.Containment, error) {
	want, err := worker.ParseContainment(cfg.Containment)
	if err != nil {
		return "", fmt.Errorf("containment %q: use auto, pid-namespace, user+pid-namespace or none (--containment)", cfg.Containment)
	}
	got, why := worker.DetectContainment(ctx, guard)
	switch {
	case want == worker.ContainmentNone:
		got = worker.ContainmentNone
	case want != "" && want != got && !(want == worker.ContainmentUserPIDNamespace && got == worker.ContainmentPIDNamespace):
		return "", fmt.Errorf("containment %s is not allowed here (%s): give regent CAP_SYS_ADMIN (root outside a container), allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0), or use --containment auto", want, why)
	case want == worker.ContainmentUserPIDNamespace:
		got = want
	}
	if got == worker.ContainmentNone {
		if want == worker.ContainmentNone {
			log.Warn("containment", "using", got, "detail", "set by configuration: a worker's processes that leave its process group survive a SIGKILLed guard; let the service manager kill them (systemd KillMode=control-group or mixed, or a container)")
		} else {
			log.Warn("containment", "using", got, "missing", why,
				"fix", "give regent CAP_SYS_ADMIN (root outside a container) or allow user namespaces; otherwise let the service manager kill the whole tree (systemd KillMode=control-group or mixed, or a container): a worker's processes that leave its process group survive a SIGKILLed guard")
		}
		return got, nil
	}
	log.Info("containment", "using", got, "detail", "each guard is the init of a PID namespace holding its worker: everything the worker starts dies with the guard")
	return got, nil
}

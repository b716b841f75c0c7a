# regent: a small FROM-scratch image around the static (CGO_ENABLED=0)
# regent binaries. No shell, no package manager, a non-root user.
#
# Build it with `make images` (deploy/images.sh): the script compiles the
# binaries and stages this build context, so no base image is pulled and
# nothing is compiled inside the image. The context it stages:
#   bin/regent        the regent binary (also the demo worker of the local
#                     cluster: `regent demo-worker`)
#   bin/regent-guard  the lean worker guard, which regent runs from beside
#                     its own executable (without it, regent itself)
#   bin/httpcheck     the health probe (GET a URL, exit 0 on 2xx)
#   rootfs/           /etc/passwd, /etc/group, CA certificates, /tmp
#   owned/            /var/lib/regent, owned by the regent user (state, and
#                     the local cluster's observer volume)
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 owned/ /
COPY bin/ /usr/local/bin/
USER 65532:65532
ENV PATH=/usr/local/bin
WORKDIR /var/lib/regent
# /metrics, /healthz, /readyz, /status and /leader?queue=Q, when
# --http-addr listens on a non-loopback address (e.g. 0.0.0.0:9464).
EXPOSE 9464
# The default --http-addr is 127.0.0.1:9464, which this probe reaches from
# inside the container; /healthz fails while the backend session is down.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/httpcheck", "http://127.0.0.1:9464/healthz"]
# regent is PID 1: it reaps orphaned processes and forwards nothing; SIGTERM
# stops workers, resigns and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/regent"]
CMD ["--help"]

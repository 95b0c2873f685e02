#!/bin/sh
# k3s-ha lab stand-in for get.k3s.io's installer. NOT the k3s installer: it installs the
# stand-in already at ${INSTALL_K3S_BIN_DIR:-/usr/local/bin}/k3s (it never downloads) and
# writes what the upstream installer writes, with the same environment variables:
#   INSTALL_K3S_SKIP_DOWNLOAD (must be true), INSTALL_K3S_SKIP_START, INSTALL_K3S_SKIP_ENABLE,
#   INSTALL_K3S_FORCE_RESTART, INSTALL_K3S_EXEC, INSTALL_K3S_VERSION (accepted, ignored),
#   INSTALL_K3S_CHANNEL (ignored), INSTALL_K3S_NAME, INSTALL_K3S_TYPE, INSTALL_K3S_BIN_DIR,
#   INSTALL_K3S_SYSTEMD_DIR, INSTALL_K3S_SYMLINK (skip|force), K3S_URL (=> agent),
#   K3S_TOKEN / K3S_TOKEN_FILE and every other K3S_* / CONTAINERD_* / *_PROXY variable,
#   which go to <systemd dir>/<name>.service.env (mode 0600, never printed).
# Stand-in only: INSTALL_K3S_SKIP_SYSTEMCTL=true (or no systemctl) skips every systemctl
# call, so the script can be tested in a temporary root.
set -e
set -o noglob

info() { echo '[INFO] ' "$@"; }
fatal() { echo '[ERROR] ' "$@" >&2; exit 1; }

# --- quote one argument for a systemd ExecStart line (single quotes, like upstream) ---
quote() {
    for arg in "$@"; do
        printf '%s\n' "$arg" | sed "s/'/'\\\\''/g;1s/^/'/;\$s/\$/'/"
    done
}

setup_env() {
    case "$1" in
        (-*|"")
            if [ -z "${K3S_URL}" ]; then
                CMD_K3S=server
            else
                if [ -z "${K3S_TOKEN}" ] && [ -z "${K3S_TOKEN_FILE}" ]; then
                    fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
                fi
                CMD_K3S=agent
            fi ;;
        (*) CMD_K3S=$1; shift ;;
    esac
    case "${K3S_URL}" in
        ""|https://*) ;;
        *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;;
    esac
    CMD_K3S_EXEC="${CMD_K3S}"
    for arg in "$@"; do
        CMD_K3S_EXEC="${CMD_K3S_EXEC} \\
	$(quote "$arg")"
    done
    if [ -n "${INSTALL_K3S_NAME}" ]; then
        SYSTEM_NAME=k3s-${INSTALL_K3S_NAME}
    elif [ "${CMD_K3S}" = server ]; then
        SYSTEM_NAME=k3s
    else
        SYSTEM_NAME=k3s-${CMD_K3S}
    fi
    SYSTEMD_TYPE=${INSTALL_K3S_TYPE:-notify}
    BIN_DIR=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
    SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
    FILE_K3S_SERVICE=${SYSTEMD_DIR}/${SYSTEM_NAME}.service
    FILE_K3S_ENV=${SYSTEMD_DIR}/${SYSTEM_NAME}.service.env
    UNINSTALL_K3S_SH=${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh
    KILLALL_K3S_SH=${BIN_DIR}/k3s-killall.sh
    USE_SYSTEMCTL=true
    if [ "${INSTALL_K3S_SKIP_SYSTEMCTL}" = true ] || ! command -v systemctl >/dev/null 2>&1; then
        USE_SYSTEMCTL=false
    fi
    PRE_INSTALL_HASHES=$(get_installed_hashes)
}

get_installed_hashes() {
    sha256sum "${BIN_DIR}/k3s" "${FILE_K3S_SERVICE}" "${FILE_K3S_ENV}" 2>&1 || true
}

verify_binary() {
    [ "${INSTALL_K3S_SKIP_DOWNLOAD}" = true ] || fatal "this is the k3s-ha lab stand-in installer: it cannot download k3s; upload the binary to ${BIN_DIR}/k3s and set INSTALL_K3S_SKIP_DOWNLOAD=true"
    [ -x "${BIN_DIR}/k3s" ] || fatal "Executable k3s binary not found at ${BIN_DIR}/k3s"
    info "Skipping k3s download and verify (using ${BIN_DIR}/k3s${INSTALL_K3S_VERSION:+, INSTALL_K3S_VERSION=${INSTALL_K3S_VERSION} ignored})"
}

create_symlinks() {
    [ "${INSTALL_K3S_SYMLINK}" = skip ] && return
    for cmd in kubectl crictl ctr; do
        if [ ! -e "${BIN_DIR}/${cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
            which_cmd=$(command -v "${cmd}" 2>/dev/null || true)
            if [ -z "${which_cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
                info "Creating ${BIN_DIR}/${cmd} symlink to k3s"
                ln -sf k3s "${BIN_DIR}/${cmd}"
            else
                info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, command exists in PATH at ${which_cmd}"
            fi
        else
            info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, already exists"
        fi
    done
}

create_killall() {
    info "Creating killall script ${KILLALL_K3S_SH}"
    cat > "${KILLALL_K3S_SH}" << EOF
#!/bin/sh
# k3s-ha lab stand-in: stops the k3s services (there are no containers or CNI to clean).
[ \$(id -u) -eq 0 ] || exec sudo \$0 \$@
set -x
for service in ${SYSTEMD_DIR}/k3s*.service; do
    [ -s \$service ] && systemctl stop \$(basename \$service)
done
exit 0
EOF
    chmod 755 "${KILLALL_K3S_SH}"
}

create_uninstall() {
    info "Creating uninstall script ${UNINSTALL_K3S_SH}"
    cat > "${UNINSTALL_K3S_SH}" << EOF
#!/bin/sh
# k3s-ha lab stand-in uninstall, as upstream: /etc/rancher/node (node password) is kept.
set -x
[ \$(id -u) -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR \$0 \$@
K3S_DATA_DIR=\${K3S_DATA_DIR:-/var/lib/rancher/k3s}
${KILLALL_K3S_SH}
if command -v systemctl; then
    systemctl disable ${SYSTEM_NAME}
    systemctl reset-failed ${SYSTEM_NAME}
    systemctl daemon-reload
fi
rm -f ${FILE_K3S_SERVICE}
rm -f ${FILE_K3S_ENV}
remove_uninstall() {
    rm -f ${UNINSTALL_K3S_SH}
}
trap remove_uninstall EXIT
if ls ${SYSTEMD_DIR}/k3s*.service >/dev/null 2>&1; then
    set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
    exit
fi
for cmd in kubectl crictl ctr; do
    if [ -L ${BIN_DIR}/\$cmd ]; then
        rm -f ${BIN_DIR}/\$cmd
    fi
done
rm -rf /etc/rancher/k3s
rm -rf /run/k3s
rm -rf \${K3S_DATA_DIR}
rm -rf /var/lib/kubelet
rm -f ${BIN_DIR}/k3s
rm -f ${KILLALL_K3S_SH}
EOF
    chmod 755 "${UNINSTALL_K3S_SH}"
}

# --- K3S_*, CONTAINERD_* and proxy variables, quoted for systemd; never printed ---
create_env_file() {
    info "env: Creating environment file ${FILE_K3S_ENV}"
    nl='
'
    old_umask=$(umask)
    umask 0177
    tmp="${FILE_K3S_ENV}.tmp"
    : > "${tmp}"
    for name in $(env | sed -n -e 's/^\(K3S_[A-Za-z0-9_]*\)=.*/\1/p' \
            -e 's/^\(CONTAINERD_[A-Za-z0-9_]*\)=.*/\1/p' \
            -e 's/^\(\([Nn][Oo]\|[Hh][Tt][Tt][Pp]\|[Hh][Tt][Tt][Pp][Ss]\)_[Pp][Rr][Oo][Xx][Yy]\)=.*/\1/p'); do
        value=$(printenv "${name}") || continue
        case "${value}" in
            *"${nl}"*) rm -f "${tmp}"; fatal "${name} contains a newline" ;;
        esac
        printf '%s="%s"\n' "${name}" "$(printf '%s' "${value}" | sed 's/[\\"`$]/\\&/g')" >> "${tmp}"
    done
    chmod 0600 "${tmp}"
    mv -f "${tmp}" "${FILE_K3S_ENV}"
    umask "${old_umask}"
}

create_systemd_service_file() {
    info "systemd: Creating service file ${FILE_K3S_SERVICE}"
    cat > "${FILE_K3S_SERVICE}" << EOF
[Unit]
Description=Lightweight Kubernetes (k3s-ha lab stand-in, not k3s)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=${SYSTEMD_TYPE}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${FILE_K3S_ENV}
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=${BIN_DIR}/k3s \\
    ${CMD_K3S_EXEC}

EOF
    chmod 644 "${FILE_K3S_SERVICE}"
}

service_enable_and_start() {
    [ "${INSTALL_K3S_SKIP_ENABLE}" = true ] && return
    if [ "${USE_SYSTEMCTL}" = true ]; then
        info "systemd: Enabling ${SYSTEM_NAME} unit"
        systemctl enable "${FILE_K3S_SERVICE}" >/dev/null 2>&1
        systemctl daemon-reload >/dev/null
    fi
    [ "${INSTALL_K3S_SKIP_START}" = true ] && return
    POST_INSTALL_HASHES=$(get_installed_hashes)
    if [ "${PRE_INSTALL_HASHES}" = "${POST_INSTALL_HASHES}" ] && [ "${INSTALL_K3S_FORCE_RESTART}" != true ]; then
        info 'No change detected so skipping service start'
        return
    fi
    if [ "${USE_SYSTEMCTL}" = true ]; then
        info "systemd: Starting ${SYSTEM_NAME}"
        systemctl restart "${SYSTEM_NAME}"
    else
        info "systemctl skipped: ${SYSTEM_NAME} not started"
    fi
}

# --- INSTALL_K3S_EXEC words first, then the script's arguments (as upstream) ---
# shellcheck disable=SC2086
set -- ${INSTALL_K3S_EXEC} "$@"
{
    setup_env "$@"
    verify_binary
    mkdir -p "${SYSTEMD_DIR}"
    create_symlinks
    create_killall
    create_uninstall
    create_env_file
    create_systemd_service_file
    service_enable_and_start
}

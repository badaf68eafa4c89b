/*
 * The cloud-init user data a runner VM boots with (DESIGN §6): a
 * #cloud-config document that stages the runner's configuration, the
 * class's extra disks and userData, and a boot script, which mounts the
 * disks, runs userData, installs circleci-runner, runs it as
 * circleci-runner with jobs stepped down to circleci, gives it a unique
 * name, makes the VM power off when the runner exits, and starts it.
 */
#ifndef RP_CLOUDINIT_H
#define RP_CLOUDINIT_H

struct conf_class;

#define CLOUDINIT_DEFAULT_API_URL "https://runner.circleci.com"

/*
 * What the guest sees.  The staged copy is the runner's configuration as
 * plain YAML text; its runner.name line holds the placeholder until the
 * boot script installs it as the runner's own file with a name of its own.
 */
#define CLOUDINIT_STAGE_DIR "/etc/runner-provisioner"
#define CLOUDINIT_STAGED_CONFIG_PATH                                          \
	CLOUDINIT_STAGE_DIR "/circleci-runner-config.yaml"
#define CLOUDINIT_SETTINGS_PATH CLOUDINIT_STAGE_DIR "/boot.conf"
#define CLOUDINIT_DISKS_PATH    CLOUDINIT_STAGE_DIR "/disks"
#define CLOUDINIT_USERDATA_PATH CLOUDINIT_STAGE_DIR "/user-data"
#define CLOUDINIT_SUDOERS_PATH  "/etc/sudoers.d/runner-provisioner"
#define CLOUDINIT_RUNNER_CONFIG_PATH                                          \
	"/etc/circleci-runner/circleci-runner-config.yaml"
#define CLOUDINIT_BOOT_SCRIPT_PATH "/usr/local/sbin/runner-provisioner-boot"
#define CLOUDINIT_DROPIN_PATH                                                 \
	"/etc/systemd/system/circleci-runner.service.d/"                      \
	"10-runner-provisioner.conf"
#define CLOUDINIT_NAME_PLACEHOLDER "@RUNNER_NAME@"
#define CLOUDINIT_MAX_RUN_TIME     "5h" /* the runner's default */
#define CLOUDINIT_MAX_RUN_TIME_S   18000
#define CLOUDINIT_STOP_MARGIN_S    300 /* TimeoutStopSec past maxRunTime */

/* cloudinit.c */
/*
 * Returns the cloud-init user data for cc: a new string, caller frees; it
 * contains the runner token.  api_url is the CircleCI address as configured
 * (trailing slash already stripped); it is written as api.url only when it
 * differs from CLOUDINIT_DEFAULT_API_URL (NULL or "" mean the default).
 * The same input always gives the same text, byte for byte.  Returns NULL,
 * logged, when cc has no token or a value is not valid UTF-8.  cc's runner
 * options, userData and emptyDiskMounts come as conf.c checked them.
 */
char *cloudinit_userdata(const struct conf_class *cc, const char *api_url);

#endif

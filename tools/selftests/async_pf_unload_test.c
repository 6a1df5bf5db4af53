// SPDX-License-Identifier: GPL-2.0-only
/*
 * async_pf_unload_test: kill a VMM with async #PF work queued, then
 * unload and reload kvm and the vendor module right away: the work must
 * not outlive the modules (Documentation/async-pf.rst).
 *
 *   async_pf_unload_test [cycles [module_dir]]
 *	cycles (default 50): kill, unload and reload this many times.
 *	module_dir: the directory of the kvm.ko and kvm-amd.ko or
 *	kvm-intel.ko to reload, those that are loaded; the test list passes
 *	@MODULE_DIR@, which the runner replaces with that directory, or with
 *	"none" where KVM is built in or its directory is unknown.  The test
 *	skips without a directory.
 *
 * The VMM child and the observer are those of async_pf_exit_race_test
 * (async_pf_vmm.h); here the observer resolves the VMM's userfaults while
 * it dies, so that its workers finish before the unload.  Meanwhile a
 * thread toggles kvm.nx_huge_pages, which invalidates the dying VM's
 * roots and queues their zap to its TDP MMU zap workers
 * (Documentation/tdp-zap-workers.rst): the VM goes, and the modules
 * after it, with zap work in flight too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "kvm_util.h"
#include "async_pf_vmm.h"
#include "backport_util.h"
#include "test_util.h"

static bool nx_stop;
static unsigned long nx_toggles;

/*
 * Until nx_stop: each write that changes kvm.nx_huge_pages zaps every
 * VM.  Stopped before the unload, whose sysfs removal it would race.
 */
static void *nx_toggler(void *arg)
{
	unsigned long i;
	int fd;

	fd = open(NX_HUGE_PAGES_PARAM, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	for (i = 0; !READ_ONCE(nx_stop); i++) {
		if (pwrite(fd, i & 1 ? "Y" : "N", 1, 0) == 1)
			nx_toggles++;
		usleep(500);
	}
	close(fd);
	return NULL;
}

static void reload_modules(const char *dir, const char *vendor, int *busy_retries)
{
	const char *names[2];
	char path[PATH_MAX];
	int i, fd, tries;

	/* Unload in dependency order, load in the reverse. */
	names[0] = vendor;
	names[1] = "kvm";
	for (i = 0; i < 2; i++) {
		char modname[32], *dash;

		/* File kvm-amd.ko, module kvm_amd. */
		snprintf(modname, sizeof(modname), "%s", names[i]);
		dash = strchr(modname, '-');
		if (dash)
			*dash = '_';
		for (tries = 0; syscall(__NR_delete_module, modname, O_NONBLOCK); tries++) {
			/* The dead VMM's files may still be on their way out. */
			TEST_ASSERT((errno == EAGAIN || errno == EBUSY ||
				     errno == EWOULDBLOCK) && tries < 1000,
				    "cannot unload %s: %s", modname, strerror(errno));
			(*busy_retries)++;
			usleep(10000);
		}
	}
	for (i = 1; i >= 0; i--) {
		snprintf(path, sizeof(path), "%s/%s.ko", dir, names[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		TEST_ASSERT(fd >= 0, "cannot open %s", path);
		TEST_ASSERT(!syscall(__NR_finit_module, fd, "", 0),
			    "cannot load %s: %s", path, strerror(errno));
		close(fd);
	}
}

/*
 * Both modules must be there before the first unload: once they are out,
 * a wrong directory (e.g. "@MODULE_DIR@" that no runner replaced) would
 * leave the machine without KVM for the tests after this one.
 */
static void check_module_dir(const char *dir, const char *vendor)
{
	char path[PATH_MAX];
	int i;

	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s.ko", dir,
			 i ? vendor : "kvm");
		TEST_ASSERT(!access(path, R_OK), "cannot read %s: %s", path,
			    strerror(errno));
	}
}

static int test_unload(int cycles, const char *dir)
{
	const char *vendor;
	int i, busy_retries = 0;

	/* Only a loadable module has an initstate (make check-debug's is built in). */
	__TEST_REQUIRE(!access("/sys/module/kvm/initstate", F_OK),
		       "kvm is built into this kernel, there is nothing to unload");
	__TEST_REQUIRE(dir, "no module_dir argument: the directory of the kvm modules to reload");
	__TEST_REQUIRE(strcmp(dir, "none"),
		       "module_dir is \"none\": KVM is built in or its modules' directory is unknown");
	if (!access("/sys/module/kvm_amd", F_OK))
		vendor = "kvm-amd";
	else if (!access("/sys/module/kvm_intel", F_OK))
		vendor = "kvm-intel";
	else
		__TEST_REQUIRE(0, "neither kvm_amd nor kvm_intel is loaded");
	check_module_dir(dir, vendor);
	setup_observer();

	for (i = 1; i <= cycles; i++) {
		pthread_t nx;
		struct vmm v;

		vmm_start(&v, false);
		WRITE_ONCE(nx_stop, false);
		TEST_ASSERT(!pthread_create(&nx, NULL, nx_toggler, NULL),
			    "cannot start the nx_huge_pages thread");
		vmm_kill(&v, true);
		WRITE_ONCE(nx_stop, true);
		pthread_join(nx, NULL);
		vmm_release(&v);
		reload_modules(dir, vendor, &busy_retries);
		if (i % 10 == 0)
			pr_info("unload: %d/%d cycles\n", i, cycles);
	}
	pr_info("unload: %d cycles of kill VMM with async #PF queued, unload %s and kvm, reload (%d busy retries)\n",
		cycles, vendor, busy_retries);
	pr_info("unload: %lu kvm.nx_huge_pages writes zapped the VMs meanwhile%s\n",
		nx_toggles, nx_toggles ? "" : " (it cannot be written here)");
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc > 3) {
		fprintf(stderr, "usage: %s [cycles [module_dir|none]]\n", argv[0]);
		return 1;
	}
	__TEST_REQUIRE(kvm_has_cap(KVM_CAP_ASYNC_PF_INT),
		       "KVM does not support interrupt-based async #PF");

	return test_unload(arg_u64(argc, argv, 1, 50), argc > 2 ? argv[2] : NULL);
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests of the async #PF worker (kvm-backport,
 * Documentation/async-pf.rst).
 *
 * Built only with CONFIG_KVM_ASYNC_PF_KUNIT_TEST, #included at the end of
 * virt/kvm/async_pf.c: async_pf_execute() and async_pf_cache are static
 * and the worker is only reachable as the work function that
 * kvm_setup_async_pf() queues.  Every test queues real work with
 * kvm_setup_async_pf(), lets the real worker run on the system workqueue
 * and takes items back with kvm_clear_async_pf_completion_queue(), the
 * path of vCPU and VM destruction.
 *
 * What is made up: the VM and vCPU are zeroed structures with only what
 * those paths read set up (vcpu->kvm, kvm->mm, the async #PF lists and,
 * on x86, the empty gfn hash), and the VMM's address space is an mm made
 * with mm_alloc() holding one anonymous page.  The guest side (delivery
 * of "page not present" and "page ready") is not reached: the vCPU does
 * not have paravirtual async #PF enabled, which is the halt path of
 * kvm_arch_async_page_not_present().
 *
 * Item lifetime is checked through the lists and counters below and by
 * KASAN: in 6.1 its report of a use-after-free or double free does not
 * fail the running test, but make kunit fails the run on any report in
 * the kernel log.  A leaked item is found by kmemleak in make
 * check-debug, whose kernel runs these tests at boot.
 */
#include <kunit/test.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/mman.h>
#include <linux/sched/signal.h>

#include "kvm_backport_compat.h"

/* How long a worker that should not block gets to finish. */
#define APF_TEST_WAIT_MS	5000

struct apf_test {
	struct kvm *kvm;
	struct kvm_vcpu *vcpu;
	struct mm_struct *mm;
	unsigned long hva;
	/* The test still holds the mm_users reference of mm_alloc(). */
	bool mm_users_held;
};

/*
 * A VMM's address space with one anonymous, not yet faulted in page at
 * ctx->hva.  Like kvm_create_vm(), the test also holds mm_count for as
 * long as the VM lives, so the worker may always look at kvm->mm.
 */
static int apf_test_make_mm(struct kunit *test, struct apf_test *ctx)
{
	struct mm_struct *mm = mm_alloc();

	if (!mm)
		return -ENOMEM;
	mm->task_size = TASK_SIZE;
	arch_pick_mmap_layout(mm, &current->signal->rlim[RLIMIT_STACK]);

	kthread_use_mm(mm);
	ctx->hva = vm_mmap(NULL, 0, PAGE_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, 0);
	kthread_unuse_mm(mm);
	if (IS_ERR_VALUE(ctx->hva)) {
		mmput(mm);
		return -ENOMEM;
	}

	mmgrab(mm);
	ctx->mm = mm;
	ctx->mm_users_held = true;
	return 0;
}

static int apf_test_init(struct kunit *test)
{
	struct apf_test *ctx;
	struct kvm_vcpu *vcpu;
	int i;

	test->priv = NULL;
	ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	ctx->kvm = kunit_kzalloc(test, sizeof(*ctx->kvm), GFP_KERNEL);
	vcpu = kunit_kzalloc(test, sizeof(*vcpu), GFP_KERNEL);
	if (!ctx->kvm || !vcpu)
		return -ENOMEM;
	if (apf_test_make_mm(test, ctx))
		return -ENOMEM;

	ctx->kvm->mm = ctx->mm;
	vcpu->kvm = ctx->kvm;
	vcpu->cpu = -1;
	rcuwait_init(&vcpu->wait);
	kvm_async_pf_vcpu_init(vcpu);
	/* As kvm_async_pf_hash_reset() at vCPU creation: no gfn pending. */
	for (i = 0; i < ARRAY_SIZE(vcpu->arch.apf.gfns); i++)
		vcpu->arch.apf.gfns[i] = ~0;
	ctx->vcpu = vcpu;
	test->priv = ctx;
	return 0;
}

static void apf_test_exit(struct kunit *test)
{
	struct apf_test *ctx = test->priv;

	if (!ctx)
		return;
	/*
	 * No work item may outlive the test's vCPU: take back whatever a
	 * failed test left, as vCPU destruction would.
	 */
	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	if (ctx->mm_users_held)
		mmput(ctx->mm);
	mmdrop(ctx->mm);
}

/* Exact: the worker faulted the page in on another CPU. */
static unsigned long apf_test_resident(struct apf_test *ctx)
{
	return kvm_backport_mm_counter_sum(ctx->mm, MM_ANONPAGES);
}

/*
 * Queue one fault on ctx->hva through the real setup path and return the
 * item, which stays valid until the test takes it back: only the vCPU
 * frees items.
 */
static struct kvm_async_pf *apf_test_queue(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_arch_async_pf arch = {
		.token = 1,
		.gfn = 0x1234,
		.direct_map = true,
	};

	KUNIT_ASSERT_TRUE(test, kvm_setup_async_pf(ctx->vcpu, 0x1234000,
						   ctx->hva, &arch,
						   KVM_ASYNC_PF_KERNEL));
	KUNIT_ASSERT_EQ(test, ctx->vcpu->async_pf.queued, 1U);
	return list_last_entry(&ctx->vcpu->async_pf.queue,
			       struct kvm_async_pf, queue);
}

/* Wait for the worker to put @apf on the done list, without flushing. */
static bool apf_test_wait_done(struct apf_test *ctx, struct kvm_async_pf *apf)
{
	int ms;

	for (ms = 0; ms < APF_TEST_WAIT_MS; ms += 20) {
		if (!READ_ONCE(apf->vcpu))
			return true;
		msleep(20);
	}
	return false;
}

static bool apf_test_on_done_list(struct apf_test *ctx,
				  struct kvm_async_pf *apf)
{
	struct kvm_async_pf *pos;
	bool found = false;

	spin_lock(&ctx->vcpu->async_pf.lock);
	list_for_each_entry(pos, &ctx->vcpu->async_pf.done, link)
		found |= pos == apf;
	spin_unlock(&ctx->vcpu->async_pf.lock);
	return found;
}

static void apf_test_expect_all_taken_back(struct kunit *test)
{
	struct apf_test *ctx = test->priv;

	KUNIT_EXPECT_TRUE(test, list_empty(&ctx->vcpu->async_pf.queue));
	KUNIT_EXPECT_TRUE(test, list_empty(&ctx->vcpu->async_pf.done));
	KUNIT_EXPECT_EQ(test, ctx->vcpu->async_pf.queued, 0U);
}

/*
 * The VMM is alive: the worker faults the page in, drops its pin on the
 * mm, hands the item to the done list and notifies the vCPU.
 */
static void apf_test_live_mm(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_async_pf *apf;

	KUNIT_ASSERT_EQ(test, apf_test_resident(ctx), 0UL);
	apf = apf_test_queue(test);
	flush_work(&apf->work);

	KUNIT_EXPECT_EQ(test, apf_test_resident(ctx), 1UL);
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->mm->mm_users), 1);
	KUNIT_EXPECT_NULL(test, apf->vcpu);
	KUNIT_EXPECT_TRUE(test, apf_test_on_done_list(ctx, apf));
	KUNIT_EXPECT_TRUE(test, kvm_test_request(KVM_REQ_APF_READY, ctx->vcpu));

	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	apf_test_expect_all_taken_back(test);
}

/*
 * The VMM is exiting (mm_users is zero, the address space torn down):
 * the worker must not try a gup, yet the vCPU must still be told the
 * page is ready.  The test holds mmap_lock for write while the worker
 * runs, so a worker that went for the mm would block there and never
 * complete.
 */
static void apf_test_dead_mm(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_async_pf *apf;
	bool done;

	ctx->mm_users_held = false;
	mmput(ctx->mm);
	KUNIT_ASSERT_EQ(test, atomic_read(&ctx->mm->mm_users), 0);

	mmap_write_lock(ctx->mm);
	apf = apf_test_queue(test);
	done = apf_test_wait_done(ctx, apf);
	mmap_write_unlock(ctx->mm);
	flush_work(&apf->work);

	KUNIT_EXPECT_TRUE_MSG(test, done,
			      "worker blocked on the dead VMM's mmap_lock");
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->mm->mm_users), 0);
	KUNIT_EXPECT_EQ(test, apf_test_resident(ctx), 0UL);
	KUNIT_EXPECT_TRUE(test, apf_test_on_done_list(ctx, apf));
	KUNIT_EXPECT_TRUE(test, kvm_test_request(KVM_REQ_APF_READY, ctx->vcpu));

	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	apf_test_expect_all_taken_back(test);
}

/*
 * vCPU destruction before the worker started: the item is cancelled and
 * freed by kvm_clear_async_pf_completion_queue(), never run, so no gup
 * and no "page ready".
 */
static void apf_test_cancel_pending(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_async_pf *apf;
	bool pending;

	/*
	 * The work goes to this CPU's pool, whose worker cannot run before
	 * this thread sleeps or is preempted; nothing below sleeps before
	 * the cancel unless the work is already running.
	 */
	preempt_disable();
	apf = apf_test_queue(test);
	pending = work_pending(&apf->work);
	preempt_enable();
	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	if (!pending)
		kunit_skip(test, "the worker started before it could be cancelled");

	KUNIT_EXPECT_EQ(test, apf_test_resident(ctx), 0UL);
	KUNIT_EXPECT_FALSE(test, kvm_test_request(KVM_REQ_APF_READY, ctx->vcpu));
	apf_test_expect_all_taken_back(test);
}

struct apf_test_clear {
	struct kvm_vcpu *vcpu;
	struct completion done;
};

static int apf_test_clear_thread(void *data)
{
	struct apf_test_clear *clear = data;

	kvm_clear_async_pf_completion_queue(clear->vcpu);
	complete(&clear->done);
	return 0;
}

/*
 * vCPU destruction while the worker runs: it must wait for the worker
 * (which may still use the vCPU), then free the item the worker put on
 * the done list, exactly once.  The test keeps the worker inside its gup
 * by holding mmap_lock for write.
 */
static void apf_test_clear_while_running(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct apf_test_clear clear = { .vcpu = ctx->vcpu };
	struct task_struct *thread;
	struct kvm_async_pf *apf;
	bool running = false, waited;
	int ms;

	init_completion(&clear.done);
	mmap_write_lock(ctx->mm);
	apf = apf_test_queue(test);
	for (ms = 0; ms < APF_TEST_WAIT_MS && !running; ms += 20) {
		running = work_busy(&apf->work) & WORK_BUSY_RUNNING;
		msleep(20);
	}

	thread = kthread_run(apf_test_clear_thread, &clear, "apf_test_clear");
	if (IS_ERR(thread)) {
		mmap_write_unlock(ctx->mm);
		KUNIT_FAIL(test, "cannot start the destruction thread");
		return;
	}
	/* Destruction must not get past the running worker. */
	waited = !wait_for_completion_timeout(&clear.done,
					      msecs_to_jiffies(200));
	mmap_write_unlock(ctx->mm);
	wait_for_completion(&clear.done);

	KUNIT_EXPECT_TRUE(test, running);
	KUNIT_EXPECT_TRUE_MSG(test, waited,
			      "vCPU destruction did not wait for the worker");
	KUNIT_EXPECT_EQ(test, apf_test_resident(ctx), 1UL);
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->mm->mm_users), 1);
	apf_test_expect_all_taken_back(test);
}

/*
 * Several items at once, in every state destruction can find them in:
 * done and not yet consumed, and still queued.  Each is freed once.
 */
static void apf_test_clear_mixed(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_arch_async_pf arch = { .token = 2, .gfn = 0x4321 };
	struct kvm_async_pf *first;

	first = apf_test_queue(test);
	flush_work(&first->work);
	KUNIT_ASSERT_TRUE(test, apf_test_on_done_list(ctx, first));

	KUNIT_ASSERT_TRUE(test, kvm_setup_async_pf(ctx->vcpu, 0x4321000,
						   ctx->hva, &arch,
						   KVM_ASYNC_PF_KERNEL));
	KUNIT_ASSERT_EQ(test, ctx->vcpu->async_pf.queued, 2U);

	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	apf_test_expect_all_taken_back(test);
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->mm->mm_users), 1);
}

static struct kunit_case apf_test_cases[] = {
	KUNIT_CASE(apf_test_live_mm),
	KUNIT_CASE(apf_test_dead_mm),
	KUNIT_CASE(apf_test_cancel_pending),
	KUNIT_CASE(apf_test_clear_while_running),
	KUNIT_CASE(apf_test_clear_mixed),
	{}
};

static struct kunit_suite apf_test_suite = {
	.name = "kvm_async_pf",
	.init = apf_test_init,
	.exit = apf_test_exit,
	.test_cases = apf_test_cases,
};

kunit_test_suite(apf_test_suite);

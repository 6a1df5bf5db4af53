// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests of the TDP MMU root zap workers on 6.12 (kvm-backport,
 * Documentation/tdp-zap-workers.rst).  6.1's suite, for workers that are
 * vhost_tasks and waiters that zap chunks themselves.
 *
 * Built only with CONFIG_KVM_TDP_MMU_ZAP_KUNIT_TEST, #included at the end
 * of arch/x86/kvm/mmu/tdp_mmu.c: the pool, its list of roots and its
 * per-CPU counters are private to that file, and kvm.tdp_mmu_zap_wq is a
 * static variable there.  Nothing in the zap path is replaced: roots are
 * created by kvm_tdp_mmu_alloc_root(), populated by kvm_tdp_mmu_map(),
 * handed over by kvm_tdp_mmu_invalidate_all_roots(), zapped by the pool's
 * vhost_tasks and by the waiter in kvm_tdp_mmu_zap_invalidated_roots(),
 * the two TDP MMU calls of kvm_mmu_zap_all_fast().  The pool is created by
 * kvm_tdp_mmu_create_zap_pool() in the thread that plays the VMM, whose
 * threads the workers become, and everything is torn down by
 * kvm_mmu_destroy() and kvm_mmu_uninit_tdp_mmu(), the paths of vCPU and
 * VM destruction.
 *
 * The thread playing the VMM is a kthread (the KUnit case's own, or one
 * made to be confined), so it has no mm: the workers share its NULL mm,
 * which they never use, as the VMM's workers never touch the VMM's.
 *
 * What is made up: the VM and the vCPU are zeroed structures with what
 * those paths use set up by the real initialisers (kvm_mmu_init_tdp_mmu(),
 * kvm_mmu_create(), kvm_init_mmu() for a vCPU in real mode, which gives
 * the root role the vendor's TDP level dictates), and a memslot that is
 * only passed along.  Every SPTE maps the zero page read-only, so zapping
 * a leaf neither dirties nor ages a page of anyone's.  The tests need the
 * TDP MMU in use (kvm-amd with NPT or kvm-intel with EPT initialised at
 * boot) and are skipped otherwise.
 *
 * Locking as in the real callers: roots are invalidated with mmu_lock held
 * for write, created (by kvm_tdp_mmu_alloc_root()) and given SPTEs with it
 * held for read (as a vCPU fault does), the flush runs with slots_lock
 * held and mmu_lock not held.  A root is dereferenced only while it is
 * listed in tdp_mmu_roots, looked up under RCU, so a root put once too
 * often fails the test instead of being read after it was freed.
 */
#include <kunit/test.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/sched/cputime.h>
#include <linux/seq_file.h>
#include <uapi/linux/sched/types.h>

/* Guest memory is laid out in GiBs below: at most this many are used. */
#define TDP_ZAP_TEST_MAX_GIB	16

/* Sizes in gfns of a 1 GiB region and of one zap chunk. */
#define TDP_ZAP_TEST_GIB	KVM_PAGES_PER_HPAGE(PG_LEVEL_1G)
#define TDP_ZAP_TEST_CHUNKS_PER_GIB	(TDP_ZAP_TEST_GIB / TDP_ZAP_CHUNK_GFNS)

/* Priorities the confinement tests give to the thread creating the VM. */
#define TDP_ZAP_TEST_NICE	7
#define TDP_ZAP_TEST_RT_PRIO	10

/* Bound on list walks, so that a corrupted list fails a test, not the run. */
#define TDP_ZAP_TEST_MAX_LIST	64

/* How long the workers get to zap a root on their own, in ms. */
#define TDP_ZAP_TEST_WORKERS_MS	10000

struct tdp_zap_test {
	struct kvm *kvm;
	struct kvm_vcpu *vcpu;
	/* Only passed along: nothing reads it for read-only 4 KiB SPTEs. */
	struct kvm_memory_slot slot;
	/*
	 * Roots on which the test owns a reference (taken over from the
	 * vCPU when it moved to a new root), put by the test or at exit.
	 */
	struct kvm_mmu_page *held[2];
	/* kvm_mmu_create() succeeded: kvm_mmu_destroy() must run. */
	bool mmu_created;
	bool saved_zap_wq;
	/* The pool's nr_workers while a test hides them from the kicks. */
	int hidden_workers;
};

static int tdp_zap_test_init(struct kunit *test)
{
	struct tdp_zap_test *ctx;
	struct kvm *kvm;
	struct kvm_vcpu *vcpu;

	test->priv = NULL;
	if (!tdp_enabled)
		kunit_skip(test, "TDP (NPT/EPT) is not enabled");

	ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	ctx->saved_zap_wq = READ_ONCE(tdp_mmu_zap_wq);
	/* struct kvm holds the shadow MMU's hash table: not a small kzalloc. */
	ctx->kvm = kvzalloc(sizeof(*ctx->kvm), GFP_KERNEL_ACCOUNT);
	ctx->vcpu = kvzalloc(sizeof(*ctx->vcpu), GFP_KERNEL_ACCOUNT);
	test->priv = ctx;
	if (!ctx->kvm || !ctx->vcpu)
		return -ENOMEM;
	kvm = ctx->kvm;
	vcpu = ctx->vcpu;

	if (!tdp_mmu_enabled)
		kunit_skip(test, "the TDP MMU is disabled (kvm.tdp_mmu=N)");
	rwlock_init(&kvm->mmu_lock);
	mutex_init(&kvm->slots_lock);
	kvm_mmu_init_tdp_mmu(kvm);

	vcpu->kvm = kvm;
	/* As a VMM that gives the guest the host's MAXPHYADDR in CPUID. */
	vcpu->arch.maxphyaddr = boot_cpu_data.x86_phys_bits;
	if (kvm_mmu_create(vcpu))
		return -ENOMEM;
	ctx->mmu_created = true;
	kvm_init_mmu(vcpu);
	return 0;
}

/*
 * @root's reference count, or -1 if it is no longer in tdp_mmu_roots,
 * i.e. its last reference was put and it is (being) freed: only a listed
 * root is dereferenced.
 */
static int tdp_zap_test_root_count(struct kvm *kvm, struct kvm_mmu_page *root)
{
	struct kvm_mmu_page *pos;
	int count = -1;

	rcu_read_lock();
	list_for_each_entry_rcu(pos, &kvm->arch.tdp_mmu_roots, link) {
		if (pos == root)
			count = refcount_read(&root->tdp_mmu_root_count);
	}
	rcu_read_unlock();
	return count;
}

static void tdp_zap_test_exit(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_mmu *mmu;
	int i;

	if (!ctx)
		return;
	if (ctx->kvm && tdp_enabled && tdp_mmu_enabled) {
		/* Workers that a test hid from the kicks are there again. */
		if (ctx->hidden_workers)
			ctx->kvm->tdp_mmu_zap_pool->nr_workers = ctx->hidden_workers;
		/*
		 * Whatever a failed test left behind: zap what is queued.
		 * The workers may still own roots; the puts below are only
		 * of the test's own references.
		 */
		if (ctx->kvm->tdp_mmu_zap_pool) {
			mutex_lock(&ctx->kvm->slots_lock);
			kvm_tdp_mmu_zap_invalidated_roots(ctx->kvm, 0, -1ULL);
			mutex_unlock(&ctx->kvm->slots_lock);
		}
		/* Roots freed under the test's feet have been reported. */
		read_lock(&ctx->kvm->mmu_lock);
		for (i = 0; i < ARRAY_SIZE(ctx->held); i++) {
			if (ctx->held[i] &&
			    tdp_zap_test_root_count(ctx->kvm, ctx->held[i]) > 0)
				kvm_tdp_mmu_put_root(ctx->kvm, ctx->held[i]);
		}
		read_unlock(&ctx->kvm->mmu_lock);
		mmu = &ctx->vcpu->arch.root_mmu;
		if (ctx->mmu_created && VALID_PAGE(mmu->root.hpa) &&
		    tdp_zap_test_root_count(ctx->kvm,
					    root_to_sp(mmu->root.hpa)) < 0)
			mmu->root.hpa = INVALID_PAGE;
		/* vCPU destruction, then VM destruction: workers stop there. */
		if (ctx->mmu_created)
			kvm_mmu_destroy(ctx->vcpu);
		kvm_mmu_uninit_tdp_mmu(ctx->kvm);
	}
	WRITE_ONCE(tdp_mmu_zap_wq, ctx->saved_zap_wq);
	kvfree(ctx->vcpu);
	kvfree(ctx->kvm);
}

/* The pool, created by the calling thread as KVM_CREATE_VM would. */
static struct kvm_tdp_zap_pool *tdp_zap_test_create_pool(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;

	kvm_tdp_mmu_create_zap_pool(ctx->kvm);
	KUNIT_ASSERT_NOT_NULL(test, ctx->kvm->tdp_mmu_zap_pool);
	return ctx->kvm->tdp_mmu_zap_pool;
}

/* Enough shadow pages and headers for a root or one 4 KiB mapping. */
static void tdp_zap_test_topup(struct kunit *test)
{
	struct kvm_vcpu *vcpu = ((struct tdp_zap_test *)test->priv)->vcpu;

	KUNIT_ASSERT_EQ(test,
			kvm_mmu_topup_memory_cache(&vcpu->arch.mmu_page_header_cache,
						   PT64_ROOT_MAX_LEVEL), 0);
	KUNIT_ASSERT_EQ(test,
			kvm_mmu_topup_memory_cache(&vcpu->arch.mmu_shadow_page_cache,
						   PT64_ROOT_MAX_LEVEL), 0);
}

/*
 * Give the vCPU a new root as mmu_alloc_direct_roots() does (the vCPU
 * holds a reference, the TDP MMU another).  The vCPU has no valid root, or
 * the reference it held was handed to the test.
 */
static struct kvm_mmu_page *tdp_zap_test_load_root(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_mmu_page *root;

	tdp_zap_test_topup(test);
	KUNIT_ASSERT_EQ(test, kvm_tdp_mmu_alloc_root(ctx->vcpu), 0);
	root = root_to_sp(ctx->vcpu->arch.mmu->root.hpa);
	KUNIT_ASSERT_NOT_NULL(test, root);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 2);
	return root;
}

/*
 * Install a 4 KiB SPTE for @gfn in the vCPU's root through the TDP MMU's
 * fault handler, with mmu_lock held for read as a vCPU fault holds it.
 */
static void tdp_zap_test_map(struct kunit *test, gfn_t gfn)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_page_fault fault = {
		.addr = gfn_to_gpa(gfn),
		.is_tdp = true,
		.max_level = PG_LEVEL_4K,
		.req_level = PG_LEVEL_4K,
		.goal_level = PG_LEVEL_4K,
		.gfn = gfn,
		.slot = &ctx->slot,
		.pfn = page_to_pfn(ZERO_PAGE(0)),
		.map_writable = false,
	};
	int r;

	KUNIT_ASSERT_LT(test, gfn, tdp_mmu_max_gfn_exclusive());
	tdp_zap_test_topup(test);
	read_lock(&ctx->kvm->mmu_lock);
	r = kvm_tdp_mmu_map(ctx->vcpu, &fault);
	read_unlock(&ctx->kvm->mmu_lock);
	KUNIT_ASSERT_EQ(test, r, RET_PF_FIXED);
}

static gfn_t tdp_zap_test_gfn(int gib, int chunk, gfn_t offset)
{
	return (gfn_t)gib * TDP_ZAP_TEST_GIB + chunk * TDP_ZAP_CHUNK_GFNS +
	       offset;
}

/*
 * What kvm_mmu_zap_all_fast() asks of the TDP MMU, in two steps, for the
 * whole gfn space (the NX huge page parameter, VM destruction) or, as
 * for a memslot deletion, for gfns [@start, @end).  Both with slots_lock
 * held, as kvm_mmu_zap_all_fast() holds it; the invalidation with
 * mmu_lock held for write, the wait without it.
 */
static void tdp_zap_test_invalidate_range(struct tdp_zap_test *ctx,
					  gfn_t start, gfn_t end)
{
	mutex_lock(&ctx->kvm->slots_lock);
	write_lock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, start, end);
	write_unlock(&ctx->kvm->mmu_lock);
	mutex_unlock(&ctx->kvm->slots_lock);
}

/*
 * The wait returns once the roots it needs are off the pool's list, which
 * a worker that finished a root may still hold its own reference on: the
 * worker puts it before it drops mmu_lock, held for read, so taking the
 * lock for write waits for that put, and the root counts the test checks
 * afterwards are settled.
 */
static void tdp_zap_test_wait_range(struct tdp_zap_test *ctx, gfn_t start,
				    gfn_t end)
{
	mutex_lock(&ctx->kvm->slots_lock);
	kvm_tdp_mmu_zap_invalidated_roots(ctx->kvm, start, end);
	mutex_unlock(&ctx->kvm->slots_lock);
	write_lock(&ctx->kvm->mmu_lock);
	write_unlock(&ctx->kvm->mmu_lock);
}

static void tdp_zap_test_invalidate(struct tdp_zap_test *ctx)
{
	tdp_zap_test_invalidate_range(ctx, 0, -1ULL);
}

/* The vCPU hands its reference on its current root to the test. */
static void tdp_zap_test_hold_vcpu_root(struct tdp_zap_test *ctx, int slot)
{
	struct kvm_mmu *mmu = ctx->vcpu->arch.mmu;

	ctx->held[slot] = root_to_sp(mmu->root.hpa);
	mmu->root.hpa = INVALID_PAGE;
}

/* Put the test's reference on ctx->held[@slot], if the root is still there. */
static void tdp_zap_test_put_held(struct tdp_zap_test *ctx, int slot)
{
	struct kvm_mmu_page *root = ctx->held[slot];

	ctx->held[slot] = NULL;
	read_lock(&ctx->kvm->mmu_lock);
	if (root && tdp_zap_test_root_count(ctx->kvm, root) > 0)
		kvm_tdp_mmu_put_root(ctx->kvm, root);
	read_unlock(&ctx->kvm->mmu_lock);
}

/* How many times @root is on the pool's list (-1: the list is corrupted). */
static int tdp_zap_test_nr_queued(struct kvm_tdp_zap_pool *pool,
				  struct kvm_mmu_page *root)
{
	struct list_head *pos;
	int n = 0, seen = 0;

	spin_lock(&pool->lock);
	list_for_each(pos, &pool->roots) {
		if (++seen > TDP_ZAP_TEST_MAX_LIST) {
			n = -1;
			break;
		}
		if (pos == &root->tdp_mmu_zap_link)
			n++;
	}
	spin_unlock(&pool->lock);
	return n;
}

static bool tdp_zap_test_pool_empty(struct kvm_tdp_zap_pool *pool)
{
	bool empty;

	spin_lock(&pool->lock);
	empty = list_empty(&pool->roots);
	spin_unlock(&pool->lock);
	return empty;
}

/* Zap chunks and final passes counted on @cpu, by anyone. */
static unsigned long tdp_zap_test_cpu_zaps(struct kvm_tdp_zap_pool *pool,
					   int cpu)
{
	struct kvm_tdp_zap_count *c = per_cpu_ptr(pool->nr_zaps, cpu);

	return c->chunks + c->finals + c->waited;
}

/* Zap chunks and final passes counted, by anyone, on all CPUs. */
static unsigned long tdp_zap_test_nr_zaps(struct kvm_tdp_zap_pool *pool)
{
	unsigned long sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += tdp_zap_test_cpu_zaps(pool, cpu);
	return sum;
}

/* Present entries in @root's own page table. */
static int tdp_zap_test_present(struct kvm_mmu_page *root)
{
	int i, n = 0;

	rcu_read_lock();
	for (i = 0; i < SPTE_ENT_PER_PAGE; i++)
		n += is_shadow_present_pte(kvm_tdp_mmu_read_spte((tdp_ptep_t)root->spt + i));
	rcu_read_unlock();
	return n;
}

static long tdp_zap_test_pages_4k(struct kvm *kvm)
{
	return atomic64_read(&kvm->stat.pages_4k);
}

/*
 * Every SPTE below @root is gone: the 4 KiB leaves (page stats), every
 * non-root page table (tdp_mmu_pages) and every entry of the root itself.
 * @root must be listed (the caller checked its count).
 */
static void tdp_zap_test_expect_zapped(struct kunit *test,
				       struct kvm_mmu_page *root)
{
	struct kvm *kvm = ((struct tdp_zap_test *)test->priv)->kvm;

	KUNIT_EXPECT_EQ(test, tdp_zap_test_pages_4k(kvm), 0L);
	KUNIT_EXPECT_EQ(test, atomic64_read(&kvm->arch.tdp_mmu_pages), 0LL);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_present(root), 0);
}

/*
 * Let the workers zap what was queued on their own (the waiter would zap
 * chunks itself), for at most TDP_ZAP_TEST_WORKERS_MS: true if they did.
 */
static bool tdp_zap_test_workers_finish(struct kvm_tdp_zap_pool *pool)
{
	unsigned long end = jiffies + msecs_to_jiffies(TDP_ZAP_TEST_WORKERS_MS);

	while (!tdp_zap_test_pool_empty(pool)) {
		if (time_after(jiffies, end))
			return false;
		usleep_range(1000, 2000);
	}
	return true;
}

/*
 * Wait for the claims the workers still held when a wait returned: the
 * roots they finish leave the pool's list, and a worker puts its own
 * reference on a root before it drops mmu_lock, held for read, so taking
 * the lock for write afterwards waits for that put too.
 */
static void tdp_zap_test_settle(struct tdp_zap_test *ctx)
{
	struct kvm_tdp_zap_pool *pool = ctx->kvm->tdp_mmu_zap_pool;

	if (pool)
		tdp_zap_test_workers_finish(pool);
	write_lock(&ctx->kvm->mmu_lock);
	write_unlock(&ctx->kvm->mmu_lock);
}

/*
 * The full flush, then the claims the workers still held when it returned
 * finished: every root is off the pool's list and the pool's reference
 * put, for the checks of list and counts that follow.
 */
static void tdp_zap_test_flush(struct tdp_zap_test *ctx)
{
	tdp_zap_test_wait_range(ctx, 0, -1ULL);
	tdp_zap_test_settle(ctx);
}

/*
 * Scheduling: kvm_tdp_mmu_invalidate_all_roots() hands a root to the pool
 * on its valid => invalid transition only.  With mmu_lock held for write
 * (the workers, kicked, wait for it) the test invalidates twice: the
 * pool's list must hold the root once.  The vCPU then gets a second root
 * (which takes mmu_lock for read, so the workers may zap the first one
 * meanwhile) and the test invalidates again: the list holds the second
 * root once and the first at most once.  After the flush each root had
 * exactly one final pass and the pool's reference on each was put once;
 * invalidating again after the zap queues nothing.
 */
static void tdp_zap_test_queue_once(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	struct kvm_mmu_page *a, *b;
	int a_once, a_twice, a_third, b_once;
	bool a_invalid, b_valid;
	unsigned long zaps;

	a = tdp_zap_test_load_root(test);
	tdp_zap_test_map(test, tdp_zap_test_gfn(0, 0, 1));
	tdp_zap_test_map(test, tdp_zap_test_gfn(1, 3, 7));
	zaps = tdp_zap_test_nr_zaps(pool);

	mutex_lock(&ctx->kvm->slots_lock);
	write_lock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, 0, -1ULL);
	a_once = tdp_zap_test_nr_queued(pool, a);
	a_invalid = a->role.invalid;
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, 0, -1ULL);
	a_twice = tdp_zap_test_nr_queued(pool, a);
	write_unlock(&ctx->kvm->mmu_lock);
	/* The vCPU moves on to a new root; the test keeps its old one. */
	tdp_zap_test_hold_vcpu_root(ctx, 0);
	b = tdp_zap_test_load_root(test);
	b_valid = !b->role.invalid && b != a;
	write_lock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, 0, -1ULL);
	a_third = tdp_zap_test_nr_queued(pool, a);
	b_once = tdp_zap_test_nr_queued(pool, b);
	write_unlock(&ctx->kvm->mmu_lock);
	mutex_unlock(&ctx->kvm->slots_lock);

	KUNIT_EXPECT_TRUE(test, a_invalid);
	KUNIT_EXPECT_EQ(test, a_once, 1);
	KUNIT_EXPECT_EQ_MSG(test, a_twice, 1,
			    "an invalid root was handed over again");
	KUNIT_EXPECT_TRUE(test, b_valid);
	KUNIT_EXPECT_GE(test, a_third, 0);
	KUNIT_EXPECT_LE_MSG(test, a_third, 1,
			    "an invalid root was handed over again");
	KUNIT_EXPECT_EQ(test, b_once, 1);

	tdp_zap_test_flush(ctx);
	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	/* The test's reference on a, the vCPU's on b: nothing else. */
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, a), 1);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, b), 1);
	/*
	 * a has two 1 GiB-level tables, so 2 GiB of chunks to zap; b has
	 * none and all its chunks are skipped; one final pass each.
	 */
	KUNIT_EXPECT_EQ(test, tdp_zap_test_nr_zaps(pool) - zaps,
			2UL * TDP_ZAP_TEST_CHUNKS_PER_GIB + 2);
	tdp_zap_test_expect_zapped(test, a);

	/* Both are invalid already: nothing to hand over, nothing to put. */
	zaps = tdp_zap_test_nr_zaps(pool);
	tdp_zap_test_invalidate(ctx);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_nr_queued(pool, a), 0);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_nr_queued(pool, b), 0);
	tdp_zap_test_flush(ctx);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_nr_zaps(pool), zaps);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, a), 1);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, b), 1);

	/* The last references: both roots leave tdp_mmu_roots. */
	tdp_zap_test_put_held(ctx, 0);
	kvm_mmu_unload(ctx->vcpu);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, a), -1);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, b), -1);
	KUNIT_EXPECT_TRUE(test, list_empty(&ctx->kvm->arch.tdp_mmu_roots));
}

/*
 * Flush semantics: when kvm_tdp_mmu_zap_invalidated_roots() returns, the
 * invalidated root has no SPTE left, it is off the pool's list and the
 * pool's reference was put exactly once (and, once the workers are out of
 * mmu_lock, so were their own: tdp_zap_test_wait_range()).  The vCPU still holds its own:
 * the root survives with a count of exactly one and stays reachable in
 * tdp_mmu_roots (by mmu_notifiers) until the vCPU puts it.
 */
static void tdp_zap_test_flush_vcpu_ref(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	struct kvm_mmu_page *root;
	int gib, chunk, n = 0;

	root = tdp_zap_test_load_root(test);
	for (gib = 0; gib < 3; gib++)
		for (chunk = 0; chunk < TDP_ZAP_TEST_CHUNKS_PER_GIB; chunk += 5, n++)
			tdp_zap_test_map(test, tdp_zap_test_gfn(gib, chunk, 512 * gib + chunk));
	KUNIT_ASSERT_EQ(test, tdp_zap_test_pages_4k(ctx->kvm), (long)n);
	KUNIT_ASSERT_GT(test, tdp_zap_test_present(root), 0);

	tdp_zap_test_invalidate(ctx);
	tdp_zap_test_flush(ctx);

	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	KUNIT_ASSERT_EQ_MSG(test, tdp_zap_test_root_count(ctx->kvm, root), 1,
			    "the pool's reference was not put exactly once");
	KUNIT_EXPECT_TRUE(test, root->role.invalid);
	tdp_zap_test_expect_zapped(test, root);

	/* The vCPU's put is the last one: the root is freed. */
	kvm_mmu_unload(ctx->vcpu);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), -1);
	KUNIT_EXPECT_TRUE(test, list_empty(&ctx->kvm->arch.tdp_mmu_roots));
}

/*
 * The same with only the TDP MMU's reference left when the root is
 * invalidated (the vCPU unloaded it): the final pass puts it, and the last
 * reference is that of the task that ran the final pass, so the root is
 * gone from tdp_mmu_roots once the flush has returned and that task has
 * left mmu_lock, with every SPTE zapped first.
 */
static void tdp_zap_test_flush_last_ref(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	struct kvm_mmu_page *root;

	root = tdp_zap_test_load_root(test);
	tdp_zap_test_map(test, tdp_zap_test_gfn(0, 1, 0));
	tdp_zap_test_map(test, tdp_zap_test_gfn(2, 15, 511));
	kvm_mmu_unload(ctx->vcpu);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_pages_4k(ctx->kvm), 2L);

	tdp_zap_test_invalidate(ctx);
	tdp_zap_test_flush(ctx);

	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), -1);
	KUNIT_EXPECT_TRUE(test, list_empty(&ctx->kvm->arch.tdp_mmu_roots));
	KUNIT_EXPECT_EQ(test, tdp_zap_test_pages_4k(ctx->kvm), 0L);
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->kvm->arch.tdp_mmu_pages), 0LL);
}

/*
 * Chunking, with as many workers as the test thread has CPUs (two under
 * make kunit) and the test thread claiming chunks beside them in the
 * flush: a root mapped in every 64 MiB chunk of one GiB and in a few other
 * GiBs is zapped completely.  Every chunk is counted done once
 * (tdp_mmu_zap_done == number of chunks), and the workers and the waiter
 * together zapped exactly the chunks under the 1 GiB-level tables plus
 * one final pass: a chunk zapped twice, or two final passes, would count
 * more.  Three rounds, so they race for chunks more than once.
 */
static void tdp_zap_test_chunks(struct kunit *test)
{
	static const int gibs[] = { 2, 5, 9 };
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	unsigned long zaps, want;
	struct kvm_mmu_page *root;
	int round, chunk, i, n;
	long nr = 0;

	KUNIT_EXPECT_EQ(test, pool->nr_workers,
			min_t(int, cpumask_weight(current->cpus_ptr),
			      TDP_ZAP_MAX_WORKERS));
	if (pool->nr_workers < 2)
		kunit_info(test, "one worker only: no race for chunks\n");

	for (round = 0; round < 3; round++) {
		root = tdp_zap_test_load_root(test);
		nr = tdp_mmu_zap_nr_chunks(root);
		/* The GiBs used below are all below the root's last chunk. */
		KUNIT_ASSERT_GT(test, nr,
				(long)(TDP_ZAP_TEST_MAX_GIB *
				       TDP_ZAP_TEST_CHUNKS_PER_GIB));
		n = 0;
		for (chunk = 0; chunk < TDP_ZAP_TEST_CHUNKS_PER_GIB; chunk++, n++)
			tdp_zap_test_map(test, tdp_zap_test_gfn(0, chunk, round));
		for (i = 0; i < ARRAY_SIZE(gibs); i++, n++)
			tdp_zap_test_map(test, tdp_zap_test_gfn(gibs[i] + round, i, 0));
		KUNIT_ASSERT_EQ(test, tdp_zap_test_pages_4k(ctx->kvm), (long)n);
		want = (1 + ARRAY_SIZE(gibs)) * TDP_ZAP_TEST_CHUNKS_PER_GIB + 1;
		zaps = tdp_zap_test_nr_zaps(pool);

		tdp_zap_test_invalidate(ctx);
		tdp_zap_test_flush(ctx);

		KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
		KUNIT_EXPECT_EQ(test, atomic_long_read(&root->tdp_mmu_zap_next), nr);
		KUNIT_EXPECT_EQ(test, atomic_long_read(&root->tdp_mmu_zap_done), nr);
		KUNIT_EXPECT_EQ(test, tdp_zap_test_nr_zaps(pool) - zaps, want);
		KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
		tdp_zap_test_expect_zapped(test, root);
		kvm_mmu_unload(ctx->vcpu);
		KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), -1);
	}

	/* Where the work went: both CPUs share it only if both were free. */
	kunit_info(test, "%d-level roots, %ld chunks, %d workers\n",
		   ctx->vcpu->arch.mmu->root_role.level, nr, pool->nr_workers);
	for_each_possible_cpu(i)
		kunit_info(test, "cpu%d: %lu zap items\n", i,
			   tdp_zap_test_cpu_zaps(pool, i));
}

/* A zap worker as the thread that created the pool saw it. */
struct tdp_zap_test_thread {
	/* Allowed on the CPU the creator expects, and on no other. */
	bool on_cpu;
	/* Named as the workers are. */
	bool named;
	unsigned int policy;
	unsigned int rt_priority;
	int nice;
};

/*
 * A thread playing the VMM: it creates the VM's pool on @cpu with @attr,
 * then, if @move_to is a CPU, moves every thread of its process there (as
 * taskset -a -p does), and records its other threads, the workers.
 */
struct tdp_zap_test_creator {
	struct kvm *kvm;
	int cpu;
	int move_to;
	struct sched_attr attr;
	int ret;
	/* More than TDP_ZAP_MAX_WORKERS if the creator had more threads. */
	int nr_threads;
	struct tdp_zap_test_thread threads[TDP_ZAP_MAX_WORKERS];
	struct completion done;
};

/* Allow every thread of the caller's process on @cpu only. */
static int tdp_zap_test_move_threads(int cpu)
{
	struct task_struct *tasks[TDP_ZAP_MAX_WORKERS + 1], *t;
	int n = 0, i, ret = 0;

	rcu_read_lock();
	for_each_thread(current, t) {
		if (n == ARRAY_SIZE(tasks)) {
			ret = -E2BIG;
			break;
		}
		tasks[n++] = get_task_struct(t);
	}
	rcu_read_unlock();

	/* set_cpus_allowed_ptr() sleeps: outside RCU, on references. */
	for (i = 0; i < n; i++) {
		if (!ret)
			ret = set_cpus_allowed_ptr(tasks[i], cpumask_of(cpu));
		put_task_struct(tasks[i]);
	}
	return ret;
}

static void tdp_zap_test_record_threads(struct tdp_zap_test_creator *c,
					int cpu)
{
	struct tdp_zap_test_thread *th;
	struct task_struct *t;

	c->nr_threads = 0;
	rcu_read_lock();
	for_each_thread(current, t) {
		if (t == current)
			continue;
		if (c->nr_threads++ == ARRAY_SIZE(c->threads))
			break;
		th = &c->threads[c->nr_threads - 1];
		th->on_cpu = cpumask_equal(t->cpus_ptr, cpumask_of(cpu));
		th->named = !strcmp(t->comm, "kvm-tdp-zap");
		th->policy = t->policy;
		th->rt_priority = t->rt_priority;
		th->nice = task_nice(t);
	}
	rcu_read_unlock();
}

static int tdp_zap_test_creator_fn(void *data)
{
	struct tdp_zap_test_creator *c = data;
	int cpu = c->cpu;

	c->ret = set_cpus_allowed_ptr(current, cpumask_of(c->cpu));
	if (!c->ret)
		c->ret = sched_setattr_nocheck(current, &c->attr);
	if (!c->ret) {
		kvm_tdp_mmu_create_zap_pool(c->kvm);
		if (c->move_to >= 0) {
			cpu = c->move_to;
			c->ret = tdp_zap_test_move_threads(cpu);
		}
	}
	if (!c->ret)
		tdp_zap_test_record_threads(c, cpu);
	/*
	 * @c lives on the test's stack: not touched after this.  The workers
	 * stay, threads of this exited kthread's process, until the VM is
	 * destroyed.
	 */
	complete(&c->done);
	return 0;
}

/*
 * Have a thread play the VMM as @c says and create the VM's pool: it gets
 * one worker, a thread of its own process named kvm-tdp-zap, allowed on
 * the creator's last CPU only.
 */
static struct kvm_tdp_zap_pool *
tdp_zap_test_create_pool_confined(struct kunit *test,
				  struct tdp_zap_test_creator *c)
{
	struct tdp_zap_test *ctx = test->priv;
	int cpu = c->move_to >= 0 ? c->move_to : c->cpu;
	struct kvm_tdp_zap_pool *pool;
	struct task_struct *task;
	int i;

	c->kvm = ctx->kvm;
	init_completion(&c->done);
	task = kthread_run(tdp_zap_test_creator_fn, c, "kvm-tdp-zap-test");
	KUNIT_ASSERT_FALSE(test, IS_ERR(task));
	wait_for_completion(&c->done);
	KUNIT_ASSERT_EQ(test, c->ret, 0);
	pool = ctx->kvm->tdp_mmu_zap_pool;
	KUNIT_ASSERT_NOT_NULL(test, pool);

	KUNIT_EXPECT_EQ(test, pool->nr_workers, 1);
	KUNIT_ASSERT_EQ_MSG(test, c->nr_threads, pool->nr_workers,
			    "the workers are not the creator's threads");
	for (i = 0; i < c->nr_threads; i++) {
		KUNIT_EXPECT_TRUE(test, c->threads[i].named);
		KUNIT_EXPECT_TRUE_MSG(test, c->threads[i].on_cpu,
				      "worker %d is not on CPU %d only", i, cpu);
	}
	return pool;
}

/*
 * Zap one root on a pool confined to @cpu, leaving the zap to the workers
 * (a waiter zaps chunks on its own CPU): all the zap work (chunks and the
 * final pass) is counted on @cpu, and kvm_tdp_mmu_show_zap_cpus() (debugfs
 * tdp_mmu_zap_cpus) says so.
 */
static void tdp_zap_test_expect_work_on(struct kunit *test,
					struct kvm_tdp_zap_pool *pool, int cpu)
{
	struct tdp_zap_test *ctx = test->priv;
	struct seq_file m = { .size = PAGE_SIZE };
	struct kvm_mmu_page *root;
	char *want;
	int c, len;

	m.buf = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	want = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, m.buf);
	KUNIT_ASSERT_NOT_NULL(test, want);

	root = tdp_zap_test_load_root(test);
	tdp_zap_test_map(test, tdp_zap_test_gfn(0, 2, 0));
	tdp_zap_test_map(test, tdp_zap_test_gfn(3, 4, 0));
	tdp_zap_test_invalidate(ctx);
	KUNIT_EXPECT_TRUE_MSG(test, tdp_zap_test_workers_finish(pool),
			      "the workers did not zap the root in %d ms",
			      TDP_ZAP_TEST_WORKERS_MS);
	tdp_zap_test_flush(ctx);
	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_pages_4k(ctx->kvm), 0L);

	len = scnprintf(want, PAGE_SIZE, "workers %d\n", pool->nr_workers);
	for_each_possible_cpu(c) {
		struct kvm_tdp_zap_count *n = per_cpu_ptr(pool->nr_zaps, c);

		/* The workers did it all: the flush found nothing to zap. */
		if (c == cpu) {
			KUNIT_EXPECT_EQ(test, n->chunks,
					2UL * TDP_ZAP_TEST_CHUNKS_PER_GIB);
			KUNIT_EXPECT_EQ(test, n->finals, 1UL);
		} else {
			KUNIT_EXPECT_EQ_MSG(test, n->chunks + n->finals, 0UL,
					    "zap work ran on CPU %d", c);
		}
		KUNIT_EXPECT_EQ(test, n->waited, 0UL);
		len += scnprintf(want + len, PAGE_SIZE - len,
				 "cpu%d %lu %lu %lu\n", c, n->chunks,
				 n->finals, n->waited);
	}
	kvm_tdp_mmu_show_zap_cpus(&m, ctx->kvm);
	KUNIT_EXPECT_LT(test, m.count, m.size);
	m.buf[min(m.count, m.size - 1)] = '\0';
	KUNIT_EXPECT_STREQ(test, m.buf, want);
}

/*
 * Confinement: a VMM thread allowed on one CPU only, at nice 7, gets one
 * worker, allowed on that CPU only, at nice 7 (SCHED_NORMAL), and every
 * bit of the zap runs there.
 */
static void tdp_zap_test_confine_nice(struct kunit *test)
{
	struct tdp_zap_test_creator c = {
		.cpu = cpumask_last(cpu_online_mask),
		.move_to = -1,
		.attr = {
			.size = sizeof(c.attr),
			.sched_policy = SCHED_NORMAL,
			.sched_nice = TDP_ZAP_TEST_NICE,
		},
	};
	struct kvm_tdp_zap_pool *pool;

	pool = tdp_zap_test_create_pool_confined(test, &c);
	KUNIT_EXPECT_EQ(test, c.threads[0].policy, SCHED_NORMAL);
	KUNIT_EXPECT_EQ(test, c.threads[0].nice, TDP_ZAP_TEST_NICE);
	tdp_zap_test_expect_work_on(test, pool, c.cpu);
}

/* The same for a SCHED_FIFO VMM thread: its workers get its RT priority. */
static void tdp_zap_test_confine_fifo(struct kunit *test)
{
	struct tdp_zap_test_creator c = {
		.cpu = cpumask_first(cpu_online_mask),
		.move_to = -1,
		.attr = {
			.size = sizeof(c.attr),
			.sched_policy = SCHED_FIFO,
			.sched_priority = TDP_ZAP_TEST_RT_PRIO,
		},
	};
	struct kvm_tdp_zap_pool *pool;

	pool = tdp_zap_test_create_pool_confined(test, &c);
	KUNIT_EXPECT_EQ(test, c.threads[0].policy, SCHED_FIFO);
	KUNIT_EXPECT_EQ(test, c.threads[0].rt_priority,
			(unsigned int)TDP_ZAP_TEST_RT_PRIO);
	tdp_zap_test_expect_work_on(test, pool, c.cpu);
}

/*
 * What 6.1's kthread workers cannot do: the VMM moves all its threads to
 * another CPU after the VM was created, and its worker goes with it, so
 * the zap runs on the new CPU and not at all on the old one.
 */
static void tdp_zap_test_confine_follow(struct kunit *test)
{
	struct tdp_zap_test_creator c = {
		.cpu = cpumask_first(cpu_online_mask),
		.move_to = cpumask_last(cpu_online_mask),
		.attr = {
			.size = sizeof(c.attr),
			.sched_policy = SCHED_NORMAL,
		},
	};
	struct kvm_tdp_zap_pool *pool;

	if (c.cpu == c.move_to)
		kunit_skip(test, "one CPU online: nowhere to move the VMM to");
	pool = tdp_zap_test_create_pool_confined(test, &c);
	tdp_zap_test_expect_work_on(test, pool, c.move_to);
}

/*
 * kvm.tdp_mmu_zap_wq=N when the VM is created: no pool, no workers, an
 * empty tdp_mmu_zap_cpus, and the invalidated root is marked for and
 * zapped by the distro's synchronous zap in kvm_tdp_mmu_zap_invalidated_roots(),
 * which puts the TDP MMU's reference once.
 */
static void tdp_zap_test_sync(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct seq_file m = { .size = PAGE_SIZE };
	struct kvm_mmu_page *root;

	m.buf = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, m.buf);

	WRITE_ONCE(tdp_mmu_zap_wq, false);
	kvm_tdp_mmu_create_zap_pool(ctx->kvm);
	KUNIT_ASSERT_NULL(test, ctx->kvm->tdp_mmu_zap_pool);
	kvm_tdp_mmu_show_zap_cpus(&m, ctx->kvm);
	KUNIT_EXPECT_EQ(test, m.count, (size_t)0);

	root = tdp_zap_test_load_root(test);
	tdp_zap_test_map(test, tdp_zap_test_gfn(0, 0, 0));
	tdp_zap_test_map(test, tdp_zap_test_gfn(4, 9, 3));

	tdp_zap_test_invalidate(ctx);
	KUNIT_EXPECT_TRUE(test, root->role.invalid);
	KUNIT_EXPECT_TRUE(test, root->tdp_mmu_scheduled_root_to_zap);
	/* Nothing happens until the flush: no worker took it. */
	KUNIT_EXPECT_EQ(test, tdp_zap_test_pages_4k(ctx->kvm), 2L);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 2);

	tdp_zap_test_flush(ctx);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	KUNIT_EXPECT_FALSE(test, root->tdp_mmu_scheduled_root_to_zap);
	tdp_zap_test_expect_zapped(test, root);
}

/* Present 4 KiB leaves of @root for gfns [@start, @end), read under RCU. */
static int tdp_zap_test_leaves(struct kvm_mmu_page *root, gfn_t start,
			       gfn_t end)
{
	struct tdp_iter iter;
	int n = 0;

	rcu_read_lock();
	for_each_tdp_pte_min_level(iter, root, PG_LEVEL_4K, start, end)
		n += iter.level == PG_LEVEL_4K &&
		     is_shadow_present_pte(iter.old_spte);
	rcu_read_unlock();
	return n;
}

/*
 * A memslot deletion's wait: the chunks over the deleted gfns come first
 * in the root's claim order and are the root's urgent ones (checked while
 * mmu_lock, held for write, keeps the workers out), and when the wait for
 * that range returns none of its SPTEs is left, whatever the workers did
 * with the rest.  The full flush afterwards leaves nothing.
 */
static void tdp_zap_test_urgent_range(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	gfn_t start = tdp_zap_test_gfn(3, 5, 100);
	gfn_t end = tdp_zap_test_gfn(3, 7, 3);
	long first, urgent, urgent_done, next;
	struct kvm_mmu_page *root;
	u64 seq, root_seq;
	int i;

	root = tdp_zap_test_load_root(test);
	/* In the range: its first and last page, and pages in between. */
	tdp_zap_test_map(test, start);
	tdp_zap_test_map(test, end - 1);
	for (i = 0; i < 8; i++)
		tdp_zap_test_map(test, start + 1 + i * 4096);
	/* Outside it: in the same chunks and far away. */
	tdp_zap_test_map(test, start - 1);
	tdp_zap_test_map(test, end);
	tdp_zap_test_map(test, tdp_zap_test_gfn(0, 0, 0));
	tdp_zap_test_map(test, tdp_zap_test_gfn(9, 15, 511));
	KUNIT_ASSERT_EQ(test, tdp_zap_test_leaves(root, start, end), 10);

	mutex_lock(&ctx->kvm->slots_lock);
	write_lock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, start, end);
	first = root->tdp_mmu_zap_first;
	urgent = root->tdp_mmu_zap_urgent;
	urgent_done = atomic_long_read(&root->tdp_mmu_zap_urgent_done);
	next = atomic_long_read(&root->tdp_mmu_zap_next);
	root_seq = root->tdp_mmu_zap_seq;
	seq = pool->seq;
	write_unlock(&ctx->kvm->mmu_lock);
	mutex_unlock(&ctx->kvm->slots_lock);

	/* GiB 3, chunks 5 to 7 of it: claimed first, the waiter's three. */
	KUNIT_EXPECT_EQ(test, first, (long)(3 * TDP_ZAP_TEST_CHUNKS_PER_GIB + 5));
	KUNIT_EXPECT_EQ(test, urgent, 3L);
	KUNIT_EXPECT_EQ(test, urgent_done, 0L);
	KUNIT_EXPECT_EQ(test, next, 0L);
	KUNIT_EXPECT_EQ(test, root_seq, seq);

	tdp_zap_test_wait_range(ctx, start, end);
	KUNIT_EXPECT_EQ_MSG(test, tdp_zap_test_leaves(root, start, end), 0,
			    "SPTEs of the deleted range survived the wait");
	/* Counted done by whichever task claimed them, once it is done. */
	tdp_zap_test_settle(ctx);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&root->tdp_mmu_zap_urgent_done),
			urgent);

	tdp_zap_test_flush(ctx);
	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	tdp_zap_test_expect_zapped(test, root);
}

/*
 * A root left over from an earlier invalidation, whose waiter needed
 * another range, may still map the new range anywhere: a wait for the new
 * range zaps that range of it (patch 0309), or all of it if the workers
 * fell behind.  The first root maps both ranges; it is
 * invalidated for range A, the vCPU moves to a second root, which maps
 * range B and is invalidated for B; after the wait for B neither root maps
 * anything of B, whether or not the workers had finished the first one,
 * and once their claims are done the first root is off the pool's list
 * with nothing mapped.
 */
static void tdp_zap_test_urgent_older(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	gfn_t a = tdp_zap_test_gfn(1, 0, 0), b = tdp_zap_test_gfn(6, 2, 0);
	struct kvm_mmu_page *r1, *r2;
	int i;

	r1 = tdp_zap_test_load_root(test);
	for (i = 0; i < 4; i++) {
		tdp_zap_test_map(test, a + i);
		tdp_zap_test_map(test, b + i);
	}
	for (i = 0; i < TDP_ZAP_TEST_CHUNKS_PER_GIB; i++)
		tdp_zap_test_map(test, tdp_zap_test_gfn(10, i, 0));

	mutex_lock(&ctx->kvm->slots_lock);
	write_lock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, a, a + 4);
	write_unlock(&ctx->kvm->mmu_lock);
	tdp_zap_test_hold_vcpu_root(ctx, 0);
	r2 = tdp_zap_test_load_root(test);
	for (i = 0; i < 4; i++)
		tdp_zap_test_map(test, b + i);
	write_lock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, b, b + 4);
	write_unlock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_zap_invalidated_roots(ctx->kvm, b, b + 4);
	mutex_unlock(&ctx->kvm->slots_lock);

	KUNIT_EXPECT_EQ_MSG(test, tdp_zap_test_leaves(r1, b, b + 4), 0,
			    "the older root still maps the new range");
	KUNIT_EXPECT_EQ(test, tdp_zap_test_leaves(r2, b, b + 4), 0);
	tdp_zap_test_settle(ctx);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_nr_queued(pool, r1), 0);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, r1), 1);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_present(r1), 0);

	tdp_zap_test_flush(ctx);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, r2), 1);
	tdp_zap_test_expect_zapped(test, r2);
	tdp_zap_test_put_held(ctx, 0);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_root_count(ctx->kvm, r1), -1);
}

/*
 * Every worker of the pool sleeps, off the run queue: a new worker runs
 * its loop once before it sleeps the first time, and would zap what is
 * queued by then.  The workers are the test thread's kvm-tdp-zap threads.
 */
static bool tdp_zap_test_workers_asleep(struct kvm_tdp_zap_pool *pool)
{
	unsigned long end = jiffies + msecs_to_jiffies(TDP_ZAP_TEST_WORKERS_MS);
	struct task_struct *t;
	int awake;

	do {
		awake = 0;
		rcu_read_lock();
		for_each_thread(current, t)
			awake += t != current && !strcmp(t->comm, "kvm-tdp-zap") &&
				 READ_ONCE(t->on_rq);
		rcu_read_unlock();
		if (!awake)
			return true;
		usleep_range(1000, 2000);
	} while (time_before(jiffies, end));
	return false;
}

/*
 * A burst of memslot deletions.  The wait for the second range claims none
 * of the chunks of the root that the first deletion invalidated (the
 * first range's chunks were its urgent ones): it zaps the second range of
 * that root directly and leaves the rest to the workers, so that each
 * deletion of a burst returns as fast as the first.  The test hides the
 * workers from the kicks until its checks are made, so the first root's
 * chunks stay unclaimed: a wait that claimed them would zap range C,
 * which neither deletion needs.  Then the workers zap it all.
 */
static void tdp_zap_test_burst(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	gfn_t a = tdp_zap_test_gfn(1, 0, 0), b = tdp_zap_test_gfn(6, 2, 0);
	gfn_t c = tdp_zap_test_gfn(10, 3, 0);
	int a_left, b_left, c_left, queued, i;
	struct kvm_mmu_page *r1, *r2;

	KUNIT_ASSERT_TRUE(test, tdp_zap_test_workers_asleep(pool));
	r1 = tdp_zap_test_load_root(test);
	for (i = 0; i < 4; i++) {
		tdp_zap_test_map(test, a + i);
		tdp_zap_test_map(test, b + i);
		tdp_zap_test_map(test, c + i);
	}

	/* tdp_mmu_kick_zap_pool() kicks pool->nr_workers workers. */
	ctx->hidden_workers = pool->nr_workers;
	pool->nr_workers = 0;
	tdp_zap_test_invalidate_range(ctx, a, a + 4);
	tdp_zap_test_wait_range(ctx, a, a + 4);

	tdp_zap_test_hold_vcpu_root(ctx, 0);
	r2 = tdp_zap_test_load_root(test);
	for (i = 0; i < 4; i++)
		tdp_zap_test_map(test, b + i);
	tdp_zap_test_invalidate_range(ctx, b, b + 4);
	tdp_zap_test_wait_range(ctx, b, b + 4);

	a_left = tdp_zap_test_leaves(r1, a, a + 4);
	b_left = tdp_zap_test_leaves(r1, b, b + 4) +
		 tdp_zap_test_leaves(r2, b, b + 4);
	c_left = tdp_zap_test_leaves(r1, c, c + 4);
	queued = tdp_zap_test_nr_queued(pool, r1);

	pool->nr_workers = ctx->hidden_workers;
	ctx->hidden_workers = 0;
	tdp_mmu_kick_zap_pool(pool);

	KUNIT_EXPECT_EQ(test, a_left, 0);
	KUNIT_EXPECT_EQ(test, b_left, 0);
	KUNIT_EXPECT_EQ_MSG(test, c_left, 4,
			    "the second wait zapped the first root beyond its range");
	KUNIT_EXPECT_EQ(test, queued, 1);

	KUNIT_EXPECT_TRUE_MSG(test, tdp_zap_test_workers_finish(pool),
			      "the workers did not zap the roots in %d ms",
			      TDP_ZAP_TEST_WORKERS_MS);
	tdp_zap_test_flush(ctx);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, r2), 1);
	tdp_zap_test_expect_zapped(test, r2);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, r1), 1);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_present(r1), 0);
	tdp_zap_test_put_held(ctx, 0);
}

/* The roots on the pool's list (-1: the list is corrupted). */
static int tdp_zap_test_pool_len(struct kvm_tdp_zap_pool *pool)
{
	struct list_head *pos;
	int n = 0;

	spin_lock(&pool->lock);
	list_for_each(pos, &pool->roots) {
		if (++n > TDP_ZAP_TEST_MAX_LIST) {
			n = -1;
			break;
		}
	}
	spin_unlock(&pool->lock);
	return n;
}

/*
 * The bound on what a burst leaves to the workers: with the workers
 * hidden from the kicks, each memslot deletion of a burst leaves its
 * predecessors' roots queued, up to TDP_ZAP_MAX_EARLIER of them; the wait
 * of the deletion that finds more claims and zaps every chunk of every
 * root itself, and the pool is empty when it returns.
 */
static void tdp_zap_test_burst_bound(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	gfn_t c = tdp_zap_test_gfn(10, 3, 0), b;
	int len[TDP_ZAP_MAX_EARLIER + 2], i;

	KUNIT_ASSERT_TRUE(test, tdp_zap_test_workers_asleep(pool));
	ctx->hidden_workers = pool->nr_workers;
	pool->nr_workers = 0;
	for (i = 0; i < ARRAY_SIZE(len); i++) {
		if (i)
			kvm_mmu_unload(ctx->vcpu);
		tdp_zap_test_load_root(test);
		b = tdp_zap_test_gfn(1 + i, 0, 0);
		tdp_zap_test_map(test, b);
		tdp_zap_test_map(test, c);
		tdp_zap_test_invalidate_range(ctx, b, b + 1);
		tdp_zap_test_wait_range(ctx, b, b + 1);
		len[i] = tdp_zap_test_pool_len(pool);
	}
	pool->nr_workers = ctx->hidden_workers;
	ctx->hidden_workers = 0;
	tdp_mmu_kick_zap_pool(pool);

	for (i = 0; i <= TDP_ZAP_MAX_EARLIER; i++)
		KUNIT_EXPECT_EQ(test, len[i], i + 1);
	KUNIT_EXPECT_EQ_MSG(test, len[i], 0,
			    "a burst left more than %d earlier roots queued",
			    TDP_ZAP_MAX_EARLIER);

	KUNIT_EXPECT_TRUE(test, tdp_zap_test_workers_finish(pool));
	tdp_zap_test_flush(ctx);
	KUNIT_EXPECT_EQ(test, tdp_zap_test_pages_4k(ctx->kvm), 0L);
	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
}

/*
 * Invalidate the roots for [@start, @end), as tdp_zap_test_invalidate_range()
 * does, and in the same mmu_lock hold claim the first @nr positions of
 * @root's claim order, with a reference on @root, as a worker would: the
 * workers, kicked, cannot claim before.  False if @root could not be
 * claimed, in which case nothing was taken.
 */
static bool tdp_zap_test_invalidate_claim(struct tdp_zap_test *ctx,
					  struct kvm_mmu_page *root,
					  gfn_t start, gfn_t end, long nr)
{
	bool got;

	mutex_lock(&ctx->kvm->slots_lock);
	write_lock(&ctx->kvm->mmu_lock);
	kvm_tdp_mmu_invalidate_all_roots(ctx->kvm, start, end);
	got = atomic_long_read(&root->tdp_mmu_zap_next) == 0 &&
	      kvm_tdp_mmu_get_root(root);
	if (got)
		atomic_long_set(&root->tdp_mmu_zap_next, nr);
	write_unlock(&ctx->kvm->mmu_lock);
	mutex_unlock(&ctx->kvm->slots_lock);
	return got;
}

/*
 * The test's claim of tdp_zap_test_invalidate_claim() is counted done, as
 * the worker's would be once back: the root's final pass follows when it
 * is the last, and the claim's reference is put.
 */
static void tdp_zap_test_finish_claim(struct tdp_zap_test *ctx,
				      struct kvm_tdp_zap_pool *pool,
				      struct kvm_mmu_page *root, long nr)
{
	read_lock(&ctx->kvm->mmu_lock);
	atomic_long_add(min(nr, root->tdp_mmu_zap_urgent),
			&root->tdp_mmu_zap_urgent_done);
	if (atomic_long_add_return(nr, &root->tdp_mmu_zap_done) ==
	    tdp_mmu_zap_nr_chunks(root))
		tdp_mmu_finish_root_zap(pool, root, true);
	kvm_tdp_mmu_put_root(ctx->kvm, root);
	read_unlock(&ctx->kvm->mmu_lock);
}

/*
 * The safety argument of patch 0306: once the wait for a deleted slot's
 * range A returned, the invalidated root may still map gfns of other
 * slots, B here, until it is zapped completely; those stay reachable by
 * the mmu_notifiers, which walk the invalid roots too, since the root
 * stays on tdp_mmu_roots until its final pass.  The test keeps the
 * workers out by claiming every chunk of the root itself right after the
 * invalidation, and zaps nothing: the wait zaps A's range itself and
 * nobody zaps B's.  Then kvm_unmap_gfn_range() over B, as an mmu_notifier
 * invalidation of B's host memory calls it: the invalid root must have
 * nothing of B left, and still be listed and queued.  Once the test
 * counts its claim done, the root is finished.
 */
static void tdp_zap_test_notifier_reach(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	gfn_t a = tdp_zap_test_gfn(1, 2, 0), b = tdp_zap_test_gfn(4, 5, 0);
	struct kvm_gfn_range range = {
		.slot = &ctx->slot,
		.start = b,
		.end = b + 4,
	};
	int a_left, b_before, b_after, queued, count, i;
	struct kvm_mmu_page *root;
	long nr;

	root = tdp_zap_test_load_root(test);
	for (i = 0; i < 4; i++) {
		tdp_zap_test_map(test, a + i);
		tdp_zap_test_map(test, b + i);
	}

	nr = tdp_mmu_zap_nr_chunks(root);
	KUNIT_ASSERT_TRUE(test, tdp_zap_test_invalidate_claim(ctx, root, a,
							      a + 4, nr));

	tdp_zap_test_wait_range(ctx, a, a + 4);
	a_left = tdp_zap_test_leaves(root, a, a + 4);
	b_before = tdp_zap_test_leaves(root, b, b + 4);

	mutex_lock(&ctx->kvm->slots_lock);
	write_lock(&ctx->kvm->mmu_lock);
	kvm_unmap_gfn_range(ctx->kvm, &range);
	write_unlock(&ctx->kvm->mmu_lock);
	mutex_unlock(&ctx->kvm->slots_lock);
	b_after = tdp_zap_test_leaves(root, b, b + 4);
	queued = tdp_zap_test_nr_queued(pool, root);
	count = tdp_zap_test_root_count(ctx->kvm, root);

	tdp_zap_test_finish_claim(ctx, pool, root, nr);

	KUNIT_EXPECT_EQ(test, a_left, 0);
	KUNIT_EXPECT_EQ_MSG(test, b_before, 4,
			    "slot B's SPTEs were zapped with nobody to zap them");
	KUNIT_EXPECT_EQ_MSG(test, b_after, 0,
			    "the mmu_notifier's unmap did not reach the invalid root");
	KUNIT_EXPECT_EQ(test, queued, 1);
	/* The vCPU's reference, the pool's and the test's claim's. */
	KUNIT_EXPECT_EQ(test, count, 3);

	tdp_zap_test_flush(ctx);
	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	tdp_zap_test_expect_zapped(test, root);
}

/* The wait of tdp_zap_test_stuck_claim(), in a thread of its own. */
struct tdp_zap_test_waiter {
	struct kvm *kvm;
	gfn_t start, end;
	struct completion done;
};

static int tdp_zap_test_waiter_fn(void *data)
{
	struct tdp_zap_test_waiter *w = data;

	mutex_lock(&w->kvm->slots_lock);
	kvm_tdp_mmu_zap_invalidated_roots(w->kvm, w->start, w->end);
	mutex_unlock(&w->kvm->slots_lock);
	complete(&w->done);
	return 0;
}

/*
 * A waiter never waits for a worker's claim.  A worker may not come back
 * to a chunk it claimed for a long time: preempted between two SPTEs, at
 * the VMM's low priority, on a CPU that a SCHED_FIFO task keeps busy; and
 * the writer of kvm.nx_huge_pages waits with kvm_lock held.  The test
 * plays that worker: right after the invalidation, with mmu_lock still
 * held for write, it claims the first @nr positions of the root's claim
 * order (the chunks of [@start, @end) come first) with a reference on the
 * root, and zaps nothing.  The wait, in a thread of its own, must return
 * within TDP_ZAP_TEST_WORKERS_MS with nothing of [@start, @end) mapped,
 * and the root must stay queued: its zap cannot be done while the claim
 * is held.  Then the test counts its claim done, as the worker would once
 * back, and the root leaves the pool with nothing mapped.
 */
static void tdp_zap_test_stuck_claim_range(struct kunit *test, gfn_t start,
					   gfn_t end, long nr)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	struct tdp_zap_test_waiter w = { .kvm = ctx->kvm, .start = start,
					 .end = end };
	struct kvm_mmu_page *root;
	struct task_struct *task;
	int left = -1, queued;
	bool returned;

	root = tdp_zap_test_load_root(test);
	tdp_zap_test_map(test, tdp_zap_test_gfn(0, 0, 3));
	tdp_zap_test_map(test, tdp_zap_test_gfn(2, 1, 0));
	tdp_zap_test_map(test, tdp_zap_test_gfn(2, 2, 9));
	tdp_zap_test_map(test, tdp_zap_test_gfn(7, 0, 0));
	KUNIT_ASSERT_GT(test, tdp_zap_test_leaves(root, start, end), 0);

	KUNIT_ASSERT_TRUE(test, tdp_zap_test_invalidate_claim(ctx, root, start,
							      end, nr));

	init_completion(&w.done);
	task = kthread_run(tdp_zap_test_waiter_fn, &w, "kvm-tdp-zap-waiter");
	if (IS_ERR(task))
		KUNIT_FAIL(test, "no thread for the wait: %ld", PTR_ERR(task));
	returned = !IS_ERR(task) &&
		   wait_for_completion_timeout(&w.done,
					       msecs_to_jiffies(TDP_ZAP_TEST_WORKERS_MS));
	if (returned)
		left = tdp_zap_test_leaves(root, start, end);
	queued = tdp_zap_test_nr_queued(pool, root);

	/* Back from wherever it was: the claim is counted done. */
	tdp_zap_test_finish_claim(ctx, pool, root, nr);
	/* The waiter is gone once its wait is: @w is on this stack. */
	if (!IS_ERR(task) && !returned)
		wait_for_completion(&w.done);

	KUNIT_EXPECT_TRUE_MSG(test, returned,
			      "the wait waited for a claim the test held %d ms",
			      TDP_ZAP_TEST_WORKERS_MS);
	KUNIT_EXPECT_EQ_MSG(test, left, 0,
			    "SPTEs of the range the claim covers survived the wait");
	KUNIT_EXPECT_EQ(test, queued, 1);

	tdp_zap_test_flush(ctx);
	KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	tdp_zap_test_expect_zapped(test, root);
}

/* A memslot deletion: the claim covers all of the deleted range's chunks. */
static void tdp_zap_test_stuck_claim(struct kunit *test)
{
	gfn_t start = tdp_zap_test_gfn(2, 1, 0), end = tdp_zap_test_gfn(2, 3, 0);

	tdp_zap_test_stuck_claim_range(test, start, end, 2);
}

/* kvm.nx_huge_pages: the whole gfn space, the claim on its first chunk. */
static void tdp_zap_test_stuck_claim_all(struct kunit *test)
{
	tdp_zap_test_stuck_claim_range(test, 0, -1ULL, 1);
}

static int tdp_zap_test_flusher_fn(void *data)
{
	struct tdp_zap_test_waiter *w = data;

	__tdp_mmu_flush_zap_pool(w->kvm->tdp_mmu_zap_pool);
	complete(&w->done);
	return 0;
}

/*
 * VM destruction finishes what memslot updates left to the workers, which
 * may be gone with the VMM (a SIGKILL ends them): with the workers hidden
 * from the kicks and a root that a wait for a range left queued, the
 * flush of tdp_mmu_destroy_zap_pool() must zap all of it itself, in a
 * thread of its own, within TDP_ZAP_TEST_WORKERS_MS.
 */
static void tdp_zap_test_destroy_flush(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	struct tdp_zap_test_waiter w = { .kvm = ctx->kvm };
	gfn_t a = tdp_zap_test_gfn(1, 0, 0), c = tdp_zap_test_gfn(10, 3, 0);
	struct kvm_mmu_page *root;
	struct task_struct *task;
	bool returned;
	int queued;

	KUNIT_ASSERT_TRUE(test, tdp_zap_test_workers_asleep(pool));
	root = tdp_zap_test_load_root(test);
	tdp_zap_test_map(test, a);
	tdp_zap_test_map(test, c);
	ctx->hidden_workers = pool->nr_workers;
	pool->nr_workers = 0;
	tdp_zap_test_invalidate_range(ctx, a, a + 1);
	tdp_zap_test_wait_range(ctx, a, a + 1);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_leaves(root, c, c + 1), 1);

	init_completion(&w.done);
	task = kthread_run(tdp_zap_test_flusher_fn, &w, "kvm-tdp-zap-flush");
	if (IS_ERR(task))
		KUNIT_FAIL(test, "no thread for the flush: %ld", PTR_ERR(task));
	returned = !IS_ERR(task) &&
		   wait_for_completion_timeout(&w.done,
					       msecs_to_jiffies(TDP_ZAP_TEST_WORKERS_MS));
	queued = tdp_zap_test_nr_queued(pool, root);

	/* The workers, back, finish what the flush left: @w is on this stack. */
	pool->nr_workers = ctx->hidden_workers;
	ctx->hidden_workers = 0;
	tdp_mmu_kick_zap_pool(pool);
	if (!IS_ERR(task) && !returned)
		wait_for_completion(&w.done);

	KUNIT_EXPECT_TRUE_MSG(test, returned,
			      "the flush waited %d ms for workers that were not there",
			      TDP_ZAP_TEST_WORKERS_MS);
	KUNIT_EXPECT_EQ(test, queued, 0);
	tdp_zap_test_settle(ctx);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	tdp_zap_test_expect_zapped(test, root);
}

/*
 * A worker lets a writer of mmu_lock in between two chunks.  The root
 * has its first TDP_ZAP_TEST_DENSE chunks full of 4 KiB SPTEs, each of
 * which takes a worker tens of ms under emulation, and one worker is
 * kicked: no other task on its CPU asks it to reschedule.  Once it
 * claimed the first chunk, the test takes mmu_lock for write, as an
 * mmu_notifier invalidation or a waiter's barrier does, and must get it
 * before the worker is through the root.  With the preemption model
 * "none" or "voluntary", rwlock_needbreak() is false on 6.12 and such a
 * worker yields inside a chunk only when asked to reschedule; since 0310
 * it also stops between chunks.  Here RCU asks it within milliseconds (a
 * grace period is always pending), so the case passes without 0310 too:
 * it guards the property, and the scale benchmark's one-worker deletion
 * waits show the patch (Documentation/tdp-zap-workers.rst).
 */
#define TDP_ZAP_TEST_DENSE	4

static void tdp_zap_test_writer_between_chunks(struct kunit *test)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = tdp_zap_test_create_pool(test);
	struct kvm_mmu_page *root;
	long nr, next, done;
	unsigned long end;
	ktime_t start;
	s64 waited;
	gfn_t gfn;
	int chunk;

	if (num_online_cpus() < 2)
		kunit_skip(test, "skipped: a writer beside a zapping worker needs two CPUs");
	KUNIT_ASSERT_TRUE(test, tdp_zap_test_workers_asleep(pool));
	/* One worker kicked: no other task on its CPU makes it reschedule. */
	ctx->hidden_workers = pool->nr_workers;
	pool->nr_workers = 1;
	root = tdp_zap_test_load_root(test);
	nr = tdp_mmu_zap_nr_chunks(root);
	for (chunk = 0; chunk < TDP_ZAP_TEST_DENSE; chunk++)
		for (gfn = 0; gfn < TDP_ZAP_CHUNK_GFNS; gfn++)
			tdp_zap_test_map(test, tdp_zap_test_gfn(0, chunk, gfn));

	tdp_zap_test_invalidate(ctx);
	end = jiffies + msecs_to_jiffies(TDP_ZAP_TEST_WORKERS_MS);
	/* Not a busy wait: the worker may have been woken on this CPU. */
	while (!atomic_long_read(&root->tdp_mmu_zap_next) &&
	       time_before(jiffies, end))
		cond_resched();
	start = ktime_get();
	write_lock(&ctx->kvm->mmu_lock);
	waited = ktime_ms_delta(ktime_get(), start);
	next = atomic_long_read(&root->tdp_mmu_zap_next);
	done = atomic_long_read(&root->tdp_mmu_zap_done);
	write_unlock(&ctx->kvm->mmu_lock);

	kunit_info(test, "the writer waited %lld ms, %ld of %ld chunks done then\n",
		   waited, done, nr);
	KUNIT_ASSERT_GT_MSG(test, next, 0L, "no worker claimed a chunk in %d ms",
			    TDP_ZAP_TEST_WORKERS_MS);
	KUNIT_EXPECT_LT_MSG(test, done, nr,
			    "the writer got mmu_lock only after the workers were through the root");
	pool->nr_workers = ctx->hidden_workers;
	ctx->hidden_workers = 0;
	tdp_zap_test_flush(ctx);
	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	tdp_zap_test_expect_zapped(test, root);
}

static struct kunit_case tdp_zap_test_cases[] = {
	KUNIT_CASE(tdp_zap_test_queue_once),
	KUNIT_CASE(tdp_zap_test_flush_vcpu_ref),
	KUNIT_CASE(tdp_zap_test_flush_last_ref),
	KUNIT_CASE(tdp_zap_test_chunks),
	KUNIT_CASE(tdp_zap_test_confine_nice),
	KUNIT_CASE(tdp_zap_test_confine_fifo),
	KUNIT_CASE(tdp_zap_test_confine_follow),
	KUNIT_CASE(tdp_zap_test_sync),
	KUNIT_CASE(tdp_zap_test_urgent_range),
	KUNIT_CASE(tdp_zap_test_urgent_older),
	KUNIT_CASE(tdp_zap_test_burst),
	KUNIT_CASE(tdp_zap_test_burst_bound),
	KUNIT_CASE(tdp_zap_test_notifier_reach),
	KUNIT_CASE(tdp_zap_test_stuck_claim),
	KUNIT_CASE(tdp_zap_test_stuck_claim_all),
	KUNIT_CASE(tdp_zap_test_destroy_flush),
	KUNIT_CASE(tdp_zap_test_writer_between_chunks),
	{}
};

static struct kunit_suite tdp_zap_test_suite = {
	.name = "kvm_tdp_mmu_zap",
	.init = tdp_zap_test_init,
	.exit = tdp_zap_test_exit,
	.test_cases = tdp_zap_test_cases,
};

/*
 * Scale benchmark of the zap (make bench; make kunit runs it at its small
 * default size, where only its checks count).  For each VM size of
 * kvm.tdp_zap_bench_mib (MiB of 4 KiB SPTEs) and each way of zapping, one
 * parameter of tdp_zap_bench_run: a root maps a 2 MiB memslot at gfn 0
 * and the VM's memory from 1 GiB up, then the 2 MiB memslot is deleted
 * (or, for "2 workers+waiter", kvm.nx_huge_pages is written, i.e. all of
 * the root must be gone), timed from the invalidation.  Then, as in a
 * burst of deletions, a new root maps a 2 MiB memslot at 2 MiB and that
 * one is deleted too, while the workers still zap the first root.
 * tdp_zap_bench_table prints the figures of all parameters as one table.
 *
 *   stock             kvm.tdp_mmu_zap_wq=N: the distro's synchronous zap,
 *                     the code our series keeps for that setting; the
 *                     deletion returns when the whole root is zapped
 *   1 worker          the pool of a VMM thread allowed on one CPU
 *   2 workers         the pool of a VMM thread allowed on both CPUs
 *   2 workers+waiter  the same, and the waiter needs all of the root, so
 *                     it claims chunks beside the workers
 *
 * Only page tables are allocated (2 MiB per GiB): every leaf maps the zero
 * page.  tdp_zap_bench_fill() maps the first and the last 4 KiB of each
 * 2 MiB through kvm_tdp_mmu_map(), checks that both SPTEs are the same
 * (the SPTE of a page does not depend on its gfn here), and sets the 510
 * entries between to that SPTE with tdp_mmu_set_spte_atomic(), the TDP
 * MMU's own setter, which also counts them in the page stats: 512 faults
 * per 2 MiB would take most of the run under emulation.
 */
#define TDP_ZAP_BENCH_MAX_SIZES	6
#define TDP_ZAP_BENCH_MAX_MIB	(128 * 1024)
/* The VM's memory starts at 1 GiB, the 2 MiB memslot at gfn 0. */
#define TDP_ZAP_BENCH_BIG_GFN	TDP_ZAP_TEST_GIB
#define TDP_ZAP_BENCH_SMALL	KVM_PAGES_PER_HPAGE(PG_LEVEL_2M)
/* A worker pool gets this long to finish a root (under a 300 s case limit). */
#define TDP_ZAP_BENCH_WORKERS_MS	240000
/* Room for a ratio printed by tdp_zap_bench_ratio(). */
#define TDP_ZAP_BENCH_RATIO_LEN	24

static unsigned int tdp_zap_bench_mib[TDP_ZAP_BENCH_MAX_SIZES] = { 64 };
static int tdp_zap_bench_nr_sizes = 1;
module_param_array_named(tdp_zap_bench_mib, tdp_zap_bench_mib, uint,
			 &tdp_zap_bench_nr_sizes, 0444);
MODULE_PARM_DESC(tdp_zap_bench_mib,
		 "KUnit kvm_tdp_mmu_zap_bench: VM sizes in MiB of 4 KiB SPTEs");

enum {
	TDP_ZAP_BENCH_STOCK,
	TDP_ZAP_BENCH_ONE,
	TDP_ZAP_BENCH_TWO,
	TDP_ZAP_BENCH_HELP,
	TDP_ZAP_BENCH_MODES,
};

static const char * const tdp_zap_bench_mode_name[TDP_ZAP_BENCH_MODES] = {
	"stock", "1 worker", "2 workers", "2 workers+waiter",
};

struct tdp_zap_bench_result {
	bool done;
	int workers;
	long sptes;
	/* From the invalidation until the deletion (or write) returns. */
	u64 block_ns;
	/* The same for the burst's second deletion. */
	u64 block2_ns;
	/* From the invalidation until the root is zapped and off the pool. */
	u64 wall_ns;
	/*
	 * CPU time of the task that waited (in the deletions only), and of
	 * each worker; softirq work such as the RCU callbacks that free the
	 * tables is charged to whichever task it interrupted.
	 */
	u64 waiter_ns;
	u64 worker_ns[TDP_ZAP_MAX_WORKERS];
	int worker_cpu[TDP_ZAP_MAX_WORKERS];
	/* Zap work counted on each CPU (chunks + final passes + waited). */
	unsigned long cpu_zaps[2];
};

static struct tdp_zap_bench_result
tdp_zap_bench_results[TDP_ZAP_BENCH_MAX_SIZES][TDP_ZAP_BENCH_MODES];
static int tdp_zap_bench_idx[TDP_ZAP_BENCH_MAX_SIZES * TDP_ZAP_BENCH_MODES];

static const void *tdp_zap_bench_params(const void *prev, char *desc)
{
	int i, nr = min(tdp_zap_bench_nr_sizes, TDP_ZAP_BENCH_MAX_SIZES) *
		    TDP_ZAP_BENCH_MODES;

	if (!prev) {
		for (i = 0; i < ARRAY_SIZE(tdp_zap_bench_idx); i++)
			tdp_zap_bench_idx[i] = i;
		i = 0;
	} else {
		i = *(const int *)prev + 1;
	}
	if (i >= nr)
		return NULL;
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "%u MiB, %s",
		 tdp_zap_bench_mib[i / TDP_ZAP_BENCH_MODES],
		 tdp_zap_bench_mode_name[i % TDP_ZAP_BENCH_MODES]);
	return &tdp_zap_bench_idx[i];
}

/* The 4 KiB SPTE of @gfn in @root, 0 if none; read under RCU. */
static u64 tdp_zap_bench_leaf(struct kvm_mmu_page *root, gfn_t gfn)
{
	struct tdp_iter iter;
	u64 spte = 0;

	rcu_read_lock();
	for_each_tdp_pte_min_level(iter, root, PG_LEVEL_4K, gfn, gfn + 1)
		if (iter.level == PG_LEVEL_4K)
			spte = iter.old_spte;
	rcu_read_unlock();
	return is_shadow_present_pte(spte) ? spte : 0;
}

/* Map gfns [@start, @start + @nr) with 4 KiB SPTEs; both 2 MiB aligned. */
static void tdp_zap_bench_fill(struct kunit *test, struct kvm_mmu_page *root,
			       gfn_t start, gfn_t nr)
{
	struct tdp_zap_test *ctx = test->priv;
	struct kvm *kvm = ctx->kvm;
	unsigned long report = jiffies + 10 * HZ;
	gfn_t gfn, last;
	struct tdp_iter iter;
	u64 first;
	long set;

	for (gfn = start; gfn < start + nr; gfn += TDP_ZAP_BENCH_SMALL) {
		last = gfn + TDP_ZAP_BENCH_SMALL - 1;
		tdp_zap_test_map(test, gfn);
		tdp_zap_test_map(test, last);
		first = tdp_zap_bench_leaf(root, gfn);
		KUNIT_ASSERT_NE(test, first, 0ULL);
		KUNIT_ASSERT_EQ(test, tdp_zap_bench_leaf(root, last), first);

		set = 0;
		read_lock(&kvm->mmu_lock);
		rcu_read_lock();
		for_each_tdp_pte_min_level(iter, root, PG_LEVEL_4K, gfn + 1,
					   last) {
			if (iter.level != PG_LEVEL_4K ||
			    is_shadow_present_pte(iter.old_spte))
				continue;
			if (!tdp_mmu_set_spte_atomic(kvm, &iter, first))
				set++;
		}
		rcu_read_unlock();
		read_unlock(&kvm->mmu_lock);
		KUNIT_ASSERT_EQ(test, set, (long)TDP_ZAP_BENCH_SMALL - 2);

		if (time_after(jiffies, report)) {
			kunit_info(test, "mapped %llu of %llu MiB\n",
				   (gfn + TDP_ZAP_BENCH_SMALL - start) >> 8,
				   nr >> 8);
			report = jiffies + 10 * HZ;
		}
		cond_resched();
	}
}

KUNIT_DEFINE_ACTION_WRAPPER(tdp_zap_bench_put_task, put_task_struct,
			    struct task_struct *);

/*
 * The pool's workers: threads of the process that created the VM, named
 * kvm-tdp-zap, here the test's own (struct vhost_task is private to its
 * file), in @tasks with a reference each that the test's end puts.
 */
static int tdp_zap_bench_workers(struct kunit *test, struct task_struct **tasks)
{
	struct task_struct *t;
	int n = 0, i;

	rcu_read_lock();
	for_each_thread(current, t) {
		if (t == current || strcmp(t->comm, "kvm-tdp-zap"))
			continue;
		if (n == TDP_ZAP_MAX_WORKERS)
			break;
		tasks[n++] = get_task_struct(t);
	}
	rcu_read_unlock();
	for (i = 0; i < n; i++) {
		if (kunit_add_action_or_reset(test, tdp_zap_bench_put_task,
					      tasks[i]))
			break;
	}
	if (i < n) {
		/* tasks[i] was put by the failed call. */
		while (++i < n)
			put_task_struct(tasks[i]);
		KUNIT_FAIL_AND_ABORT(test, "no memory for a deferred put");
	}
	return n;
}

/* Until @pool has no root left, for at most TDP_ZAP_BENCH_WORKERS_MS. */
static bool tdp_zap_bench_workers_finish(struct kunit *test,
					 struct kvm_tdp_zap_pool *pool)
{
	unsigned long end = jiffies + msecs_to_jiffies(TDP_ZAP_BENCH_WORKERS_MS);
	unsigned long report = jiffies + 10 * HZ;

	while (!tdp_zap_test_pool_empty(pool)) {
		if (time_after(jiffies, end))
			return false;
		if (time_after(jiffies, report)) {
			kunit_info(test, "waiting for the workers to zap the root\n");
			report = jiffies + 10 * HZ;
		}
		usleep_range(1000, 2000);
	}
	return true;
}

static void tdp_zap_bench_run(struct kunit *test)
{
	int idx = *(const int *)test->param_value;
	int mode = idx % TDP_ZAP_BENCH_MODES;
	unsigned int mib = tdp_zap_bench_mib[idx / TDP_ZAP_BENCH_MODES];
	struct tdp_zap_bench_result *res =
		&tdp_zap_bench_results[idx / TDP_ZAP_BENCH_MODES][mode];
	struct tdp_zap_test *ctx = test->priv;
	struct kvm_tdp_zap_pool *pool = NULL;
	gfn_t small_end = TDP_ZAP_BENCH_SMALL;
	u64 t0, t1, waiter0, worker0[TDP_ZAP_MAX_WORKERS];
	struct task_struct *workers[TDP_ZAP_MAX_WORKERS];
	struct kvm_mmu_page *root, *root2;
	struct cpumask *saved = NULL;
	int i, cpu;

	memset(res, 0, sizeof(*res));
	if (!mib || mib % 2 || mib > TDP_ZAP_BENCH_MAX_MIB)
		kunit_skip(test, "kvm.tdp_zap_bench_mib=%u: not an even size up to %u MiB",
			   mib, TDP_ZAP_BENCH_MAX_MIB);
	if (mode >= TDP_ZAP_BENCH_TWO && num_online_cpus() != 2)
		kunit_skip(test, "skipped: the two-worker cases need exactly two CPUs");

	WRITE_ONCE(tdp_mmu_zap_wq, mode != TDP_ZAP_BENCH_STOCK);
	/*
	 * One worker: the VM is created while on one CPU only (its workers
	 * take the creator's CPUs), then the case gets its CPUs back.
	 */
	cpu = cpumask_first(cpu_online_mask);
	if (mode == TDP_ZAP_BENCH_ONE) {
		saved = kunit_kmalloc(test, cpumask_size(), GFP_KERNEL);
		KUNIT_ASSERT_NOT_NULL(test, saved);
		cpumask_copy(saved, current->cpus_ptr);
		KUNIT_ASSERT_EQ(test, set_cpus_allowed_ptr(current, cpumask_of(cpu)), 0);
	}
	if (mode != TDP_ZAP_BENCH_STOCK)
		pool = tdp_zap_test_create_pool(test);
	if (mode == TDP_ZAP_BENCH_ONE)
		KUNIT_ASSERT_EQ(test, set_cpus_allowed_ptr(current, saved), 0);
	if (pool) {
		res->workers = tdp_zap_bench_workers(test, workers);
		KUNIT_ASSERT_EQ(test, res->workers, pool->nr_workers);
		KUNIT_ASSERT_EQ(test, res->workers,
				mode == TDP_ZAP_BENCH_ONE ? 1 : 2);
	}

	root = tdp_zap_test_load_root(test);
	tdp_zap_bench_fill(test, root, 0, TDP_ZAP_BENCH_SMALL);
	tdp_zap_bench_fill(test, root, TDP_ZAP_BENCH_BIG_GFN, (gfn_t)mib << 8);
	res->sptes = tdp_zap_test_pages_4k(ctx->kvm);
	KUNIT_ASSERT_EQ(test, res->sptes,
			(long)TDP_ZAP_BENCH_SMALL + ((long)mib << 8));

	for (i = 0; i < res->workers; i++)
		worker0[i] = task_sched_runtime(workers[i]);
	waiter0 = task_sched_runtime(current);
	t0 = ktime_get_ns();
	if (mode == TDP_ZAP_BENCH_HELP)
		small_end = -1ULL;
	tdp_zap_test_invalidate_range(ctx, 0, small_end);
	tdp_zap_test_wait_range(ctx, 0, small_end);
	res->block_ns = ktime_get_ns() - t0;
	res->waiter_ns = task_sched_runtime(current) - waiter0;
	KUNIT_EXPECT_EQ(test, tdp_zap_test_leaves(root, 0, TDP_ZAP_BENCH_SMALL), 0);

	if (mode != TDP_ZAP_BENCH_HELP) {
		tdp_zap_test_hold_vcpu_root(ctx, 0);
		root2 = tdp_zap_test_load_root(test);
		tdp_zap_bench_fill(test, root2, TDP_ZAP_BENCH_SMALL,
				   TDP_ZAP_BENCH_SMALL);
		res->sptes += TDP_ZAP_BENCH_SMALL;
		waiter0 = task_sched_runtime(current);
		t1 = ktime_get_ns();
		tdp_zap_test_invalidate_range(ctx, TDP_ZAP_BENCH_SMALL,
					      2 * TDP_ZAP_BENCH_SMALL);
		tdp_zap_test_wait_range(ctx, TDP_ZAP_BENCH_SMALL,
					2 * TDP_ZAP_BENCH_SMALL);
		res->block2_ns = ktime_get_ns() - t1;
		res->waiter_ns += task_sched_runtime(current) - waiter0;
		KUNIT_EXPECT_EQ(test, tdp_zap_test_leaves(root2, TDP_ZAP_BENCH_SMALL,
							  2 * TDP_ZAP_BENCH_SMALL), 0);
	}

	if (pool)
		KUNIT_ASSERT_TRUE_MSG(test, tdp_zap_bench_workers_finish(test, pool),
				      "the workers did not zap %u MiB in %d ms",
				      mib, TDP_ZAP_BENCH_WORKERS_MS);
	res->wall_ns = ktime_get_ns() - t0;
	tdp_zap_test_settle(ctx);
	for (i = 0; i < res->workers; i++) {
		res->worker_ns[i] = task_sched_runtime(workers[i]) - worker0[i];
		res->worker_cpu[i] = task_cpu(workers[i]);
	}
	for_each_online_cpu(cpu)
		if (pool && cpu < ARRAY_SIZE(res->cpu_zaps))
			res->cpu_zaps[cpu] = tdp_zap_test_cpu_zaps(pool, cpu);

	KUNIT_ASSERT_EQ(test, tdp_zap_test_root_count(ctx->kvm, root), 1);
	tdp_zap_test_expect_zapped(test, root);
	if (pool)
		KUNIT_EXPECT_TRUE(test, tdp_zap_test_pool_empty(pool));
	res->done = true;
	kunit_info(test, "%u MiB %s: %ld SPTEs, blocked %llu us, then %llu us, zapped in %llu us, waiter CPU %llu us\n",
		   mib, tdp_zap_bench_mode_name[mode], res->sptes,
		   res->block_ns / 1000, res->block2_ns / 1000,
		   res->wall_ns / 1000, res->waiter_ns / 1000);
}

static u64 tdp_zap_bench_cpu_ns(const struct tdp_zap_bench_result *r)
{
	u64 ns = r->waiter_ns;
	int i;

	for (i = 0; i < r->workers; i++)
		ns += r->worker_ns[i];
	return ns;
}

/* @a / @b with two decimals, into @buf; "-" if @b is 0. */
static const char *tdp_zap_bench_ratio(char *buf, u64 a, u64 b)
{
	u64 r;

	if (!b)
		return "-";
	r = div64_u64(a * 100 + b / 2, b);
	snprintf(buf, TDP_ZAP_BENCH_RATIO_LEN, "%llu.%02llu", r / 100, r % 100);
	return buf;
}

#define TDP_ZAP_BENCH_MS(ns)	div_u64(ns, NSEC_PER_MSEC)

static void tdp_zap_bench_row(struct kunit *test, unsigned int mib,
			      struct tdp_zap_bench_result *r)
{
	struct tdp_zap_bench_result *s = &r[TDP_ZAP_BENCH_STOCK];
	struct tdp_zap_bench_result *one = &r[TDP_ZAP_BENCH_ONE];
	struct tdp_zap_bench_result *two = &r[TDP_ZAP_BENCH_TWO];
	struct tdp_zap_bench_result *help = &r[TDP_ZAP_BENCH_HELP];
	u64 ns_s = div64_u64(tdp_zap_bench_cpu_ns(s), s->sptes);
	u64 ns_1 = div64_u64(tdp_zap_bench_cpu_ns(one), one->sptes);
	char q[3][TDP_ZAP_BENCH_RATIO_LEN];

	kunit_info(test, "| %6u | %9ld | %7llu | %5llu | %5llu | %5llu | %5llu | %5llu | %7llu | %7llu | %7llu | %7llu | %s | %s | %4llu | %4llu | %s |\n",
		   mib, s->sptes, TDP_ZAP_BENCH_MS(s->block_ns),
		   TDP_ZAP_BENCH_MS(one->block_ns),
		   TDP_ZAP_BENCH_MS(two->block_ns),
		   TDP_ZAP_BENCH_MS(s->block2_ns),
		   TDP_ZAP_BENCH_MS(one->block2_ns),
		   TDP_ZAP_BENCH_MS(two->block2_ns),
		   TDP_ZAP_BENCH_MS(s->wall_ns), TDP_ZAP_BENCH_MS(one->wall_ns),
		   TDP_ZAP_BENCH_MS(two->wall_ns),
		   TDP_ZAP_BENCH_MS(help->wall_ns),
		   tdp_zap_bench_ratio(q[0], two->wall_ns, s->wall_ns),
		   tdp_zap_bench_ratio(q[1], help->wall_ns, s->wall_ns),
		   ns_s, ns_1, tdp_zap_bench_ratio(q[2], ns_1, ns_s));
}

/* Where the workers ran, and how much CPU time each used. */
static void tdp_zap_bench_where(struct kunit *test, unsigned int mib,
				int mode, struct tdp_zap_bench_result *r)
{
	char buf[160];
	int i, len;

	len = scnprintf(buf, sizeof(buf), "waiter %llu ms;",
			TDP_ZAP_BENCH_MS(r->waiter_ns));
	for (i = 0; i < r->workers; i++)
		len += scnprintf(buf + len, sizeof(buf) - len,
				 " worker%d on cpu%d %llu ms;", i,
				 r->worker_cpu[i], TDP_ZAP_BENCH_MS(r->worker_ns[i]));
	for (i = 0; i < ARRAY_SIZE(r->cpu_zaps); i++)
		len += scnprintf(buf + len, sizeof(buf) - len,
				 " cpu%d %lu zap items;", i, r->cpu_zaps[i]);
	kunit_info(test, "%6u MiB %-16s %s\n", mib,
		   tdp_zap_bench_mode_name[mode], buf);
}

/*
 * The figures as one table, the targets next to them.  Only that every
 * measurement was made is checked: timings are figures, not results.
 */
static void tdp_zap_bench_table(struct kunit *test)
{
	int nr = min(tdp_zap_bench_nr_sizes, TDP_ZAP_BENCH_MAX_SIZES);
	struct tdp_zap_bench_result *lo, *hi;
	char r[4][TDP_ZAP_BENCH_RATIO_LEN];
	int i, mode;
	u64 stock64, ours64;

	for (i = 0; i < nr; i++)
		for (mode = 0; mode < TDP_ZAP_BENCH_MODES; mode++)
			KUNIT_ASSERT_TRUE_MSG(test, tdp_zap_bench_results[i][mode].done,
					      "%u MiB, %s: not measured",
					      tdp_zap_bench_mib[i],
					      tdp_zap_bench_mode_name[mode]);

	kunit_info(test, "TDP MMU zap at scale, %d CPUs: 4 KiB SPTEs of the zero page; times in ms\n",
		   num_online_cpus());
	kunit_info(test, "| MiB    | SPTEs     | 2 MiB slot deleted, blocked: stock | 1w | 2w | the next one: stock | 1w | 2w | whole root zapped: stock | 1w | 2w | 2w+waiter | 2w/stock | 2w+waiter/stock | ns/SPTE stock | 1w | 1w/stock |\n");
	for (i = 0; i < nr; i++)
		tdp_zap_bench_row(test, tdp_zap_bench_mib[i],
				  tdp_zap_bench_results[i]);
	for (i = 0; i < nr; i++)
		for (mode = 0; mode < TDP_ZAP_BENCH_MODES; mode++)
			tdp_zap_bench_where(test, tdp_zap_bench_mib[i], mode,
					    &tdp_zap_bench_results[i][mode]);

	lo = tdp_zap_bench_results[0];
	hi = tdp_zap_bench_results[nr - 1];
	kunit_info(test, "targets: 2 MiB slot blocked at %u MiB / at %u MiB, 2 workers %s (<= 1.20); whole root zapped / stock, 2 workers %s, 2 workers+waiter %s (<= 0.60); ns/SPTE 1 worker / stock %s (<= 1.05)\n",
		   tdp_zap_bench_mib[nr - 1], tdp_zap_bench_mib[0],
		   tdp_zap_bench_ratio(r[0], hi[TDP_ZAP_BENCH_TWO].block_ns,
				       lo[TDP_ZAP_BENCH_TWO].block_ns),
		   tdp_zap_bench_ratio(r[1], hi[TDP_ZAP_BENCH_TWO].wall_ns,
				       hi[TDP_ZAP_BENCH_STOCK].wall_ns),
		   tdp_zap_bench_ratio(r[2], hi[TDP_ZAP_BENCH_HELP].wall_ns,
				       hi[TDP_ZAP_BENCH_STOCK].wall_ns),
		   tdp_zap_bench_ratio(r[3],
				       tdp_zap_bench_cpu_ns(&hi[TDP_ZAP_BENCH_ONE]),
				       tdp_zap_bench_cpu_ns(&hi[TDP_ZAP_BENCH_STOCK])));

	/*
	 * 64 TB of 4 KiB SPTEs, 2^34 of them: the stock deletion zaps all of
	 * them at the largest size's rate; ours zaps the 2 MiB, as measured.
	 */
	stock64 = div64_u64(hi[TDP_ZAP_BENCH_STOCK].block_ns,
			    hi[TDP_ZAP_BENCH_STOCK].sptes) << 34;
	ours64 = hi[TDP_ZAP_BENCH_TWO].block_ns;
	kunit_info(test, "64 TB (2^34 SPTEs), a 2 MiB memslot deleted: stock blocks ~%llu s (%llu ns/SPTE x 2^34), ours %llu ms (as at %u MiB)\n",
		   div_u64(stock64, NSEC_PER_SEC),
		   div64_u64(hi[TDP_ZAP_BENCH_STOCK].block_ns,
			     hi[TDP_ZAP_BENCH_STOCK].sptes),
		   TDP_ZAP_BENCH_MS(ours64), tdp_zap_bench_mib[nr - 1]);
}

static struct kunit_case tdp_zap_bench_cases[] = {
	/* Slow at make bench's sizes: a minute a parameter under TCG. */
	KUNIT_CASE_PARAM_ATTR(tdp_zap_bench_run, tdp_zap_bench_params,
			      { .speed = KUNIT_SPEED_SLOW }),
	KUNIT_CASE(tdp_zap_bench_table),
	{}
};

static struct kunit_suite tdp_zap_bench_suite = {
	.name = "kvm_tdp_mmu_zap_bench",
	.init = tdp_zap_test_init,
	.exit = tdp_zap_test_exit,
	.test_cases = tdp_zap_bench_cases,
};

kunit_test_suites(&tdp_zap_test_suite, &tdp_zap_bench_suite);

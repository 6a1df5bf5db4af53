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
 * range claims what is left of it.  The first root maps both ranges; it is
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
	KUNIT_CASE(tdp_zap_test_notifier_reach),
	KUNIT_CASE(tdp_zap_test_stuck_claim),
	KUNIT_CASE(tdp_zap_test_stuck_claim_all),
	{}
};

static struct kunit_suite tdp_zap_test_suite = {
	.name = "kvm_tdp_mmu_zap",
	.init = tdp_zap_test_init,
	.exit = tdp_zap_test_exit,
	.test_cases = tdp_zap_test_cases,
};

kunit_test_suite(tdp_zap_test_suite);

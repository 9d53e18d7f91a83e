//! Installing reference tables and resolving a batch's keys through the tiers.

use super::*;

impl Enrich {
    /// Installs a freshly loaded table (at start and after each background refresh).
    pub(super) fn install(&mut self, table: Arc<Table>, tables: &mut Tables) {
        self.loaded_at = Instant::now();
        self.metrics.table_age.set(0.0);
        if self.cfg.mode == Mode::Lookup {
            self.metrics.table_entries.set(table.len() as f64);
            self.origin = OriginTier::File(table);
            return;
        }
        match &mut self.preloaded {
            Preloaded::Keyed { keys } => {
                let state = tables.get(TABLE);
                let mut kept = Vec::new();
                for (k, v) in table.iter() {
                    let kg = crate::core::partition::key_group(k.as_bytes(), self.key_groups);
                    if crate::core::partition::partition_of(kg, self.key_groups, self.partitions)
                        == self.partition
                    {
                        state.insert(kg, k.as_bytes(), 0, TableValue(Arc::clone(v)));
                        kept.push((kg, Arc::clone(k)));
                    }
                }
                for (kg, k) in keys.iter() {
                    if !table.contains_key(k) {
                        state.remove(*kg, k.as_bytes());
                    }
                }
                self.metrics.table_entries.set(kept.len() as f64);
                *keys = kept;
            }
            _ => {
                self.metrics.table_entries.set(table.len() as f64);
                self.preloaded = Preloaded::Memory(table);
            }
        }
    }

    /// Resolves the distinct keys of a batch; returns per key its answer and a completion
    /// rank (for unordered emission).
    pub(super) async fn resolve(
        &mut self,
        keys: &[Arc<str>],
        key_groups: &[u16],
        tables: &mut Tables,
    ) -> Result<Vec<(Result<Lookup, Failure>, u32)>> {
        let n = keys.len();
        let mut out: Vec<Option<(Result<Lookup, Failure>, u32)>> = vec![None; n];
        if self.cfg.mode == Mode::Preload {
            let (mut hit, mut miss) = (0, 0);
            for (i, k) in keys.iter().enumerate() {
                let v = match &mut self.preloaded {
                    Preloaded::Memory(t) => t.get(k).cloned(),
                    Preloaded::Keyed { .. } => tables
                        .get(TABLE)
                        .get(key_groups[i], k.as_bytes(), 0)?
                        .map(|v| Arc::clone(&v.0)),
                    Preloaded::None => None,
                };
                out[i] = Some(match v {
                    Some(v) => {
                        hit += 1;
                        (Ok(Lookup::Found(v)), 0)
                    }
                    None => {
                        miss += 1;
                        (Ok(Lookup::NotFound), 0)
                    }
                });
            }
            self.metrics.count("table", "hit", hit);
            self.metrics.count("table", "miss", miss);
            return Ok(out.into_iter().map(|o| o.expect("all set")).collect());
        }

        // Tier 1.
        let now = Instant::now();
        let (mut hit, mut neg) = (0, 0);
        let mut misses = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.cache.get(k, now) {
                Some(v) => {
                    if v == Lookup::NotFound {
                        neg += 1;
                    } else {
                        hit += 1;
                    }
                    out[i] = Some((Ok(v), 0));
                }
                None => misses.push(i),
            }
        }
        self.metrics.count("cache", "hit", hit);
        self.metrics.count("cache", "negative_hit", neg);
        self.metrics.count("cache", "miss", misses.len() as u64);

        // Tier 2.
        #[allow(unused_mut)]
        let mut redis_failed: Option<&'static str> = None;
        #[cfg(feature = "redis")]
        if let Some(redis) = &mut self.redis
            && !misses.is_empty()
        {
            let ks: Vec<Arc<str>> = misses.iter().map(|&i| Arc::clone(&keys[i])).collect();
            let t = std::time::Instant::now();
            let res = redis.mget(&ks).await;
            self.metrics
                .redis_latency
                .observe(t.elapsed().as_secs_f64());
            match res {
                Ok(values) => {
                    let (mut hit, mut neg) = (0, 0);
                    let mut still = Vec::new();
                    for (&i, v) in misses.iter().zip(values) {
                        match v {
                            Some(v) => {
                                if v == Lookup::NotFound {
                                    neg += 1;
                                } else {
                                    hit += 1;
                                }
                                self.cache.insert(Arc::clone(&keys[i]), v.clone(), now);
                                out[i] = Some((Ok(v), 1));
                            }
                            None => still.push(i),
                        }
                    }
                    self.metrics.count("redis", "hit", hit);
                    self.metrics.count("redis", "negative_hit", neg);
                    self.metrics.count("redis", "miss", still.len() as u64);
                    misses = still;
                }
                Err(e) => {
                    let (outcome, reason) = match e {
                        redis::RedisError::Timeout => ("timeout", "redis_unavailable"),
                        redis::RedisError::Failed => ("error", "redis_unavailable"),
                        redis::RedisError::Down(cause) => ("error", cause.reason()),
                    };
                    redis_failed = Some(reason);
                    self.metrics.count("redis", outcome, misses.len() as u64);
                }
            }
        }

        // Tier 3.
        let mut answers: Vec<(Arc<str>, Lookup)> = Vec::new();
        match &self.origin {
            OriginTier::None => {
                for &i in &misses {
                    out[i] = Some(if let Some(reason) = redis_failed {
                        (Err(Failure::Redis(reason)), 2)
                    } else {
                        // Redis (or nothing) is the store: a miss there is "not found".
                        self.cache
                            .insert(Arc::clone(&keys[i]), Lookup::NotFound, now);
                        (Ok(Lookup::NotFound), 2)
                    });
                }
            }
            OriginTier::File(table) => {
                let (mut hit, mut miss) = (0, 0);
                for &i in &misses {
                    let v = match table.get(&keys[i]) {
                        Some(v) => {
                            hit += 1;
                            Lookup::Found(Arc::clone(v))
                        }
                        None => {
                            miss += 1;
                            Lookup::NotFound
                        }
                    };
                    self.cache.insert(Arc::clone(&keys[i]), v.clone(), now);
                    answers.push((Arc::clone(&keys[i]), v.clone()));
                    out[i] = Some((Ok(v), 2));
                }
                self.metrics.count("origin", "hit", hit);
                self.metrics.count("origin", "miss", miss);
            }
            OriginTier::Http(client) => {
                let mut tasks = tokio::task::JoinSet::new();
                for &i in &misses {
                    let client = Arc::clone(client);
                    let sem = Arc::clone(&self.semaphore);
                    let key = Arc::clone(&keys[i]);
                    let policy = self.policy;
                    let seed = ((self.partition as u64) << 40)
                        ^ self.lookups_started.fetch_add(1, Ordering::Relaxed);
                    let in_flight = self.metrics.in_flight.clone();
                    let retries = self.metrics.retries.clone();
                    let latency = self.metrics.origin_latency.clone();
                    tasks.spawn(async move {
                        // The permit bounds concurrent origin calls; the timeout starts once
                        // we hold it, so queueing behind `capacity` is not a failure.
                        let _permit = sem.acquire_owned().await.expect("semaphore never closed");
                        in_flight.inc();
                        let t = std::time::Instant::now();
                        let r = tokio::time::timeout(policy.timeout, async {
                            let mut attempt = 0;
                            loop {
                                match client.get(&key).await {
                                    Ok(v) => return Ok(v),
                                    Err(e) if attempt >= policy.retries => {
                                        return Err(Failure::Origin(e));
                                    }
                                    Err(_) => {
                                        retries.inc();
                                        tokio::time::sleep(
                                            policy.delay(attempt, seed ^ u64::from(attempt)),
                                        )
                                        .await;
                                        attempt += 1;
                                    }
                                }
                            }
                        })
                        .await
                        .unwrap_or(Err(Failure::Timeout));
                        latency.observe(t.elapsed().as_secs_f64());
                        in_flight.dec();
                        (i, r)
                    });
                }
                let mut rank = 3;
                while let Some(res) = tasks.join_next().await {
                    let (i, r) = res.map_err(|e| self.fail(format!("lookup task: {e}")))?;
                    let outcome = match &r {
                        Ok(Lookup::Found(_)) => "hit",
                        Ok(Lookup::NotFound) => "miss",
                        Err(Failure::Timeout) => "timeout",
                        Err(_) => "error",
                    };
                    self.metrics.count("origin", outcome, 1);
                    if let Ok(v) = &r {
                        self.cache.insert(Arc::clone(&keys[i]), v.clone(), now);
                        answers.push((Arc::clone(&keys[i]), v.clone()));
                    }
                    out[i] = Some((r, rank));
                    rank += 1;
                }
            }
        }

        // Cache-aside write-back; a failure only costs a later origin call.
        #[cfg(feature = "redis")]
        if let Some(redis) = &mut self.redis
            && !answers.is_empty()
            && redis_failed.is_none()
            && let Err(e) = redis.write_back(&answers).await
        {
            let outcome = match e {
                redis::RedisError::Timeout => "timeout",
                _ => "error",
            };
            self.metrics.count("redis", outcome, answers.len() as u64);
        }
        let _ = answers;
        Ok(out
            .into_iter()
            .map(|o| o.expect("every key resolved by some tier"))
            .collect())
    }
}

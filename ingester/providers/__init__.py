"""Download providers: one module per provider behind one interface (`base.Provider.fetch`), tried in
order by `chain.fetch_product`; `worker.run_scene_job` is the scene worker of `ingester aoi`."""

"""Small Pléiades and SPOT DIMAP V2 bundle products, as OneAtlas delivers them, written to the documented
structure (a volume file listing one DIMAP component per image; each component's DIM_*.XML with its
raster data access, dimensions, encoding, coordinate reference system, geoposition insert, processing
settings and band measurements; GeoTIFF tiles named IMG_<…>_R<row>C<col>.TIF).

`python -m tests.fakes.dimap` writes `tests/data/oneatlas/` (the tests read those files; a test checks
that this module still makes the same products). Pixels are synthetic reflectance × 10000 (uint16),
with a no-data (0) corner; the products are orthorectified in EPSG:4326 (what the tool orders) over
Toulouse, at 0.5 m (panchromatic, 64 × 64 px in two tiles of 32 rows) and 2 m (multispectral, 16 × 16 px,
4 bands B0..B3 = blue, green, red, near infrared).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

PHR_ID = "DS_PHR1A_202204121053440_FR1_PX_E001N43_0615_01234"
SPOT_ID = "DS_SPOT6_202204131032150_FR1_FR1_FR1_FR1_E001N43_01234"
WEST, NORTH = 1.4400, 43.6050  # upper-left corner of the products
P_DEG = 0.5 / 111_320  # 0.5 m in degrees of latitude (the longitude step is the same: a small area)
MS_DEG = 4 * P_DEG

_PRODUCTS = {
    "PHR": {"mission": "PHR", "index": "1A", "volume": "VOL_PHR.XML", "stem": "PHR1A",
            "date": "2022-04-12", "time": "10:53:44", "job": "5917340101"},
    "SPOT": {"mission": "SPOT", "index": "6", "volume": "SPOT_VOL.XML", "stem": "SPOT6",
             "date": "2022-04-13", "time": "10:32:15", "job": "5917350101"},
}


def _pixels(kind: str, rows: int, cols: int, bands: int) -> np.ndarray:
    rng = np.random.default_rng(42 if kind == "P" else 7)
    data = rng.integers(300, 4000, size=(bands, rows, cols), dtype=np.uint16)
    data[:, : rows // 8, : cols // 8] = 0  # a no-data corner, as at a product's edge
    data[:, -1, -1] = 40000  # one value above int16: saturated by the extraction
    return data


def _tif(path: Path, data: np.ndarray, west: float, north: float, step: float) -> None:
    import rasterio
    from rasterio.transform import from_origin

    bands, rows, cols = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=bands, dtype="uint16",
                       crs="EPSG:4326", transform=from_origin(west, north, step, step), nodata=0,
                       compress="DEFLATE") as dst:
        dst.write(data)


def _band_ids(kind: str) -> list[str]:
    return ["P"] if kind == "P" else ["B0", "B1", "B2", "B3"]


def _spectral(band: str) -> tuple[float, float]:
    return {"P": (0.47, 0.83), "B0": (0.43, 0.55), "B1": (0.49, 0.61), "B2": (0.60, 0.72),
            "B3": (0.75, 0.95)}[band]


def dim_xml(const: str, kind: str, name: str, tiles: list[tuple[int, int, str]], rows: int, cols: int,
            tile_rows: int, step: float) -> str:
    p = _PRODUCTS[const]
    bands = _band_ids(kind)
    files = "\n".join(f'        <Data_File tile_R="{r}" tile_C="{c}">\n          <DATA_FILE_PATH href="{href}"/>\n'
                      "        </Data_File>" for r, c, href in tiles)
    measures = "\n".join(
        f"""        <Band_Radiance>
          <BAND_ID>{b}</BAND_ID>
          <MEASURE_DESC>Raw radiometric count (DN) to TOA Radiance (L). Formulae L=DN/GAIN+BIAS</MEASURE_DESC>
          <MEASURE_UNIT>watt/m2/steradians/micrometers</MEASURE_UNIT>
          <GAIN>{9.5 + i:.1f}</GAIN>
          <BIAS>0</BIAS>
        </Band_Radiance>
        <Band_Spectral_Range>
          <BAND_ID>{b}</BAND_ID>
          <MEASURE_UNIT>micrometer</MEASURE_UNIT>
          <MIN>{_spectral(b)[0]}</MIN>
          <MAX>{_spectral(b)[1]}</MAX>
          <FWHM>
            <MIN>{_spectral(b)[0] + 0.01:.2f}</MIN>
            <MAX>{_spectral(b)[1] - 0.01:.2f}</MAX>
          </FWHM>
        </Band_Spectral_Range>""" for i, b in enumerate(bands))
    east, south = WEST + cols * step, NORTH - rows * step
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Dimap_Document xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="DIMAP.xsd">
  <Metadata_Identification>
    <METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT>
    <METADATA_PROFILE>{p['mission']}_ORTHO</METADATA_PROFILE>
    <METADATA_SUBPROFILE>PRODUCT</METADATA_SUBPROFILE>
    <METADATA_LANGUAGE>en</METADATA_LANGUAGE>
  </Metadata_Identification>
  <Dataset_Identification>
    <DATASET_NAME version="1.0">{name}</DATASET_NAME>
    <DATASET_TYPE>RASTER_ORTHO</DATASET_TYPE>
    <Legal_Constraints>
      <COPYRIGHT>synthetic test product, made for the ingester tests</COPYRIGHT>
    </Legal_Constraints>
  </Dataset_Identification>
  <Dataset_Content>
    <SURFACE_AREA unit="square km">{(cols * step * 111.32) * (rows * step * 111.32):.6f}</SURFACE_AREA>
    <CLOUD_COVERAGE unit="percent">0</CLOUD_COVERAGE>
    <SNOW_COVERAGE unit="percent">0</SNOW_COVERAGE>
    <Dataset_Extent>
      <Vertex><LON>{WEST}</LON><LAT>{NORTH}</LAT></Vertex>
      <Vertex><LON>{east}</LON><LAT>{NORTH}</LAT></Vertex>
      <Vertex><LON>{east}</LON><LAT>{south}</LAT></Vertex>
      <Vertex><LON>{WEST}</LON><LAT>{south}</LAT></Vertex>
    </Dataset_Extent>
  </Dataset_Content>
  <Product_Information>
    <Delivery_Identification>
      <PRODUCTION_DATE>{p['date']}T12:00:00.000Z</PRODUCTION_DATE>
      <JOB_ID>{p['job']}</JOB_ID>
      <PRODUCT_TYPE>BUNDLE</PRODUCT_TYPE>
      <PRODUCT_CODE>{p['stem']}_ORT</PRODUCT_CODE>
      <DELIVERY_TYPE>ON_THE_FLY</DELIVERY_TYPE>
    </Delivery_Identification>
    <Producer_Information>
      <PRODUCER_NAME>Airbus DS Geo SA</PRODUCER_NAME>
    </Producer_Information>
  </Product_Information>
  <Coordinate_Reference_System>
    <Geodetic_CRS>
      <GEODETIC_CRS_TYPE>GEOGRAPHIC2D</GEODETIC_CRS_TYPE>
      <GEODETIC_CRS_NAME>WGS 84</GEODETIC_CRS_NAME>
      <GEODETIC_CRS_CODE>urn:ogc:def:crs:EPSG::4326</GEODETIC_CRS_CODE>
    </Geodetic_CRS>
  </Coordinate_Reference_System>
  <Geoposition>
    <Raster_CRS>
      <RASTER_GEOMETRY>GRID</RASTER_GEOMETRY>
      <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
    </Raster_CRS>
    <Geoposition_Insert>
      <ULXMAP unit="deg">{WEST}</ULXMAP>
      <ULYMAP unit="deg">{NORTH}</ULYMAP>
      <XDIM unit="deg">{step!r}</XDIM>
      <YDIM unit="deg">{step!r}</YDIM>
    </Geoposition_Insert>
  </Geoposition>
  <Processing_Information>
    <Production_Facility>
      <SOFTWARE version="V1.0">DIMAP writer of the ingester tests</SOFTWARE>
      <PROCESSING_CENTER>FCMUGC</PROCESSING_CENTER>
    </Production_Facility>
    <Product_Settings>
      <PROCESSING_LEVEL>ORTHO</PROCESSING_LEVEL>
      <SPECTRAL_PROCESSING>{kind}</SPECTRAL_PROCESSING>
      <Radiometric_Settings>
        <RADIOMETRIC_PROCESSING>REFLECTANCE</RADIOMETRIC_PROCESSING>
      </Radiometric_Settings>
      <Sampling_Settings>
        <RESAMPLING_SPACING unit="m">{'0.5' if kind == 'P' else '2.0'}</RESAMPLING_SPACING>
        <RESAMPLING_KERNEL>SPLINE</RESAMPLING_KERNEL>
      </Sampling_Settings>
    </Product_Settings>
  </Processing_Information>
  <Raster_Data>
    <Data_Access>
      <DATA_FILE_ORGANISATION>BAND_COMPOSITE</DATA_FILE_ORGANISATION>
      <DATA_FILE_FORMAT version="1.0">image/tiff</DATA_FILE_FORMAT>
      <DATA_FILE_TILES>true</DATA_FILE_TILES>
      <Data_Files>
{files}
      </Data_Files>
    </Data_Access>
    <Raster_Dimensions>
      <NROWS>{rows}</NROWS>
      <NCOLS>{cols}</NCOLS>
      <NBANDS>{len(bands)}</NBANDS>
      <Tile_Set>
        <NTILES>{len(tiles)}</NTILES>
        <Regular_Tiling>
          <NTILES_SIZE nrows="{tile_rows}" ncols="{cols}"/>
          <NTILES_COUNT ntiles_R="{len(tiles)}" ntiles_C="1"/>
          <OVERLAP_ROW>0</OVERLAP_ROW>
          <OVERLAP_COL>0</OVERLAP_COL>
        </Regular_Tiling>
      </Tile_Set>
    </Raster_Dimensions>
    <Raster_Encoding>
      <DATA_TYPE>INTEGER</DATA_TYPE>
      <NBITS>16</NBITS>
      <SIGN>UNSIGNED</SIGN>
      <COMPRESSION_TYPE>LOSSLESS</COMPRESSION_TYPE>
    </Raster_Encoding>
    <Raster_Display>
      <Special_Value>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_COUNT>0</SPECIAL_VALUE_COUNT>
      </Special_Value>
    </Raster_Display>
  </Raster_Data>
  <Radiometric_Data>
    <Radiometric_Calibration>
      <Instrument_Calibration>
        <Band_Measurement_List>
{measures}
        </Band_Measurement_List>
      </Instrument_Calibration>
    </Radiometric_Calibration>
  </Radiometric_Data>
  <Dataset_Sources>
    <Source_Identification>
      <SOURCE_ID>{PHR_ID if const == 'PHR' else SPOT_ID}</SOURCE_ID>
      <SOURCE_TYPE>Strip_Source</SOURCE_TYPE>
      <Strip_Source>
        <MISSION>{p['mission']}</MISSION>
        <MISSION_INDEX>{p['index']}</MISSION_INDEX>
        <INSTRUMENT>{p['mission']}</INSTRUMENT>
        <INSTRUMENT_INDEX>{p['index']}</INSTRUMENT_INDEX>
        <IMAGING_DATE>{p['date']}</IMAGING_DATE>
        <IMAGING_TIME>{p['time']}</IMAGING_TIME>
        <BAND_MODE>{kind}</BAND_MODE>
      </Strip_Source>
    </Source_Identification>
  </Dataset_Sources>
</Dimap_Document>
"""


def volume_xml(const: str, components: list[tuple[str, str]]) -> str:
    p = _PRODUCTS[const]
    parts = "\n".join(f"""      <Component>
        <COMPONENT_TITLE>{title}</COMPONENT_TITLE>
        <COMPONENT_CONTENT>DIMAP product</COMPONENT_CONTENT>
        <COMPONENT_TYPE version="2.0">DIMAP</COMPONENT_TYPE>
        <COMPONENT_PATH href="{href}"/>
      </Component>""" for title, href in components)
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Dimap_Document xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="Vol_Dimap.xsd">
  <Metadata_Identification>
    <METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT>
    <METADATA_PROFILE>{p['mission']}_VOLUME</METADATA_PROFILE>
    <METADATA_SUBPROFILE>SINGLE_VOLUME</METADATA_SUBPROFILE>
    <METADATA_LANGUAGE>en</METADATA_LANGUAGE>
  </Metadata_Identification>
  <Dataset_Identification>
    <DATASET_NAME>{p['mission']} Volume Description</DATASET_NAME>
    <DATASET_ID>{p['job']}</DATASET_ID>
  </Dataset_Identification>
  <Volume_Identification>
    <VOLUME_NAME>VOL_{p['stem']}_{p['job']}</VOLUME_NAME>
    <VOLUME_INDEX>1</VOLUME_INDEX>
    <VOLUME_TOTAL>1</VOLUME_TOTAL>
  </Volume_Identification>
  <Dataset_Content>
    <Dataset_Components>
{parts}
    </Dataset_Components>
  </Dataset_Content>
</Dimap_Document>
"""


def write_product(root: Path, const: str) -> Path:
    """Write one bundle product (P and MS components) under `root/<job>/`; returns that folder."""
    p = _PRODUCTS[const]
    folder = root / f"{const}_{p['job']}"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (p["date"] + p["time"]).replace("-", "").replace(":", "")
    components = []
    for kind, size, step, tile_rows in (("P", 64, P_DEG, 32), ("MS", 16, MS_DEG, 16)):
        sub = folder / f"IMG_{p['stem']}_{kind}_001"
        sub.mkdir(exist_ok=True)
        name = f"{p['stem']}_{kind}_{stamp}0_ORT_{p['job']}-00{1 if kind == 'MS' else 2}"
        data = _pixels(kind, size, size, 4 if kind == "MS" else 1)
        tiles = []
        for r in range(size // tile_rows):
            href = f"IMG_{name}_R{r + 1}C1.TIF"
            _tif(sub / href, data[:, r * tile_rows:(r + 1) * tile_rows], WEST, NORTH - r * tile_rows * step, step)
            tiles.append((r + 1, 1, href))
        dim = f"DIM_{name}.XML"
        (sub / dim).write_text(dim_xml(const, kind, name, tiles, size, size, tile_rows, step), encoding="utf-8")
        title = "Panchromatic" if kind == "P" else "Multi Spectral"
        components.append((f"DIMAP {p['stem']} {title} product", f"{sub.name}/{dim}"))
    (folder / p["volume"]).write_text(volume_xml(const, components), encoding="utf-8")
    return folder


def zip_product(folder: Path) -> bytes:
    """The product folder as OneAtlas delivers it: one zip whose top entry is the product folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buf.getvalue()


def main() -> None:
    root = Path(__file__).resolve().parent.parent / "data" / "oneatlas"
    for const in _PRODUCTS:
        print(write_product(root, const))


if __name__ == "__main__":
    main()
